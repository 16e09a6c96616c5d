"""`hybridserve models promote MODEL --version N` and `hybridserve models rollback MODEL`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

_STEPS = """
Steps, each bounded by its timeout; a failure or Ctrl-C leaves the old version serving:

1. publish: N's files are uploaded and verified next to the served version; config.pbtxt keeps publishing the served one.

2. fetch: N's files and reference.npz are read back from the store (sha256 checked).

3. load: N is loaded as MODEL__candidate through Triton's repository API (config + file: overrides). Unversioned requests keep going to the served version; only the gate reaches the candidate.

4. gate: the smoke gate on the candidate alone: correctness against N's reference set, the SLO flags.

5. compare: old vs new on N's reference inputs: output agreement, latency and throughput side by side.

6. switch (gate passed): config.pbtxt publishes N; MODEL is reloaded: Triton loads N, then unloads the old version once its in-flight requests are done.

7. unload: the candidate, always.

Every outcome is appended to the promotion history in the store (PREFIX/.hybridserve-history.MODEL.json): who, when, version, from-version, verdict, report summary. A plain `hybridserve sync` keeps publishing the version recorded there.

Exit codes: 0 promoted, 1 gate failed (its report is printed), 2 bad input, 3 a step failed or timed out, 130 interrupted.
"""

StateDir = Annotated[Optional[Path], typer.Option("--state-dir", help="The local plane's state directory, whose plane.json gives the defaults for --url and the store. Default: $HYBRIDSERVE_STATE_DIR, else .state/ of the checkout.")]
Url = Annotated[Optional[str], typer.Option("--url", help="Triton's HTTP endpoint HOST:PORT (repository API, explicit model control). Default: the running local plane's.")]
GrpcUrl = Annotated[Optional[str], typer.Option("--grpc-url", help="Triton's gRPC endpoint HOST:PORT for the gate and the side-by-side load. Default: the local plane's, else HTTP.")]
EndpointUrl = Annotated[Optional[str], typer.Option("--endpoint-url", help="S3 endpoint of the store (not for AWS S3). Default: the local plane's.")]
Bucket = Annotated[Optional[str], typer.Option("--bucket", help="Bucket holding the published repository. Default: the local plane's.")]
Prefix = Annotated[Optional[str], typer.Option("--prefix", help="Key prefix of the repository in the bucket (Triton's --model-repository). Default: the local plane's.")]
Region = Annotated[Optional[str], typer.Option("--region", help="Region of the store. Default: the local plane's, else us-east-1.")]
Sse = Annotated[Optional[str], typer.Option("--sse", help="Encryption of uploads: aws:kms, AES256 or none. Default: AES256 on the local plane, else aws:kms.")]
KmsKey = Annotated[Optional[str], typer.Option("--kms-key-id", help="KMS key for --sse aws:kms (default: the bucket's default key).")]
MinThroughput = Annotated[Optional[list[str]], typer.Option("--min-throughput", metavar="SLO", help="Gate SLO, as for `hybridserve smoke`: N inferences/s or MODEL=N, optionally @CONCURRENCY; repeatable.")]
MaxP99 = Annotated[Optional[list[str]], typer.Option("--max-p99-ms", metavar="SLO", help="Gate SLO: p99 latency in ms, MS or MODEL=MS, optionally @CONCURRENCY; repeatable.")]
MaxErr = Annotated[Optional[list[str]], typer.Option("--max-error-rate", metavar="SLO", help="Gate SLO: error rate R or MODEL=R, a fraction from 0 to 1; repeatable.")]
Profile = Annotated[str, typer.Option("--smoke-profile", help="Gate measurement profile: quick or default.")]
NoThroughput = Annotated[bool, typer.Option("--no-throughput", help="Gate on correctness only: no concurrency sweep, so the SLO flags are not checked (e.g. on a machine too busy to measure).")]
Json = Annotated[Optional[Path], typer.Option("--json", help="Write the gate's smoke report (JSON) here.")]
PublishT = Annotated[float, typer.Option("--publish-timeout", min=1, help="Seconds for publishing N's files (and fetching them back).")]
LoadT = Annotated[float, typer.Option("--load-timeout", min=1, help="Seconds for loading (and unloading) the candidate.")]
GateT = Annotated[float, typer.Option("--gate-timeout", min=1, help="Seconds for the smoke gate.")]
CompareT = Annotated[float, typer.Option("--compare-timeout", min=1, help="Seconds for the old-vs-new comparison.")]
SwitchT = Annotated[float, typer.Option("--switch-timeout", min=1, help="Seconds for reloading MODEL with N.")]
DrainT = Annotated[float, typer.Option("--drain-timeout", min=1, help="Seconds for the old version's in-flight requests to finish and it to unload.")]
CompareS = Annotated[float, typer.Option("--compare-seconds", min=0, help="Length of each side-by-side window (0: agreement only).")]


def _run(model: str, version: Optional[int], *, state_dir, url, grpc_url, endpoint_url, bucket, prefix, region, sse,
         kms_key_id, repo, min_throughput, max_p99_ms, max_error_rate, smoke_profile, json_path, timeouts, compare_seconds,
         no_throughput=False) -> None:
    from hybridserve.console import make_console
    from hybridserve.paths import model_repo_dir
    from hybridserve.paths import state_dir as default_state_dir
    from hybridserve.promote.endpoints import resolve
    from hybridserve.promote.flow import PromoteOptions, run_promotion
    from hybridserve.promote.gate import candidate_slos
    from hybridserve.promote.report import render, step_line
    from smoke_tests.options import PROFILES

    from hybridserve.errors import UserError
    from hybridserve.local.plane import HASH_CACHE_NAME

    console = make_console()
    candidate_slos(model, model, tuple(min_throughput or ()), tuple(max_p99_ms or ()), tuple(max_error_rate or ()))  # exit 2 first
    if smoke_profile not in PROFILES:
        raise UserError(f"--smoke-profile {smoke_profile!r}: expected one of {', '.join(PROFILES)}", exit_code=2)
    state_dir = (state_dir or default_state_dir()).resolve()
    ep = resolve(state_dir=state_dir, url=url, grpc_url=grpc_url, endpoint_url=endpoint_url,
                 bucket=bucket, prefix=prefix, region=region, sse=sse, kms_key_id=kms_key_id)
    options = PromoteOptions(
        model=model, version=version, triton_url=ep.triton_url, store=ep.store,
        repo_dir=(repo or model_repo_dir()) if version is not None else None,
        grpc_url=ep.grpc_url, metrics_url=ep.metrics_url,
        min_throughput=tuple(min_throughput or ()), max_p99_ms=tuple(max_p99_ms or ()), max_error_rate=tuple(max_error_rate or ()),
        profile=smoke_profile, throughput=not no_throughput, timeouts=timeouts, compare_seconds=compare_seconds, json_path=json_path,
        hash_cache=state_dir / HASH_CACHE_NAME,  # what `local up` and `sync` validated there is not validated again
    )
    what = f"version {version}" if version is not None else "the previous passing version"
    console.print(f"[bold]{'promote' if version is not None else 'rollback'}[/] {model} to {what} on Triton {ep.triton_url}, "
                  f"store {ep.store.url}", highlight=False)
    result = run_promotion(options, say=lambda step: console.print(step_line(step), highlight=False))
    console.print(render(result))
    raise SystemExit(result.exit_code)


def promote_command(
    model: Annotated[str, typer.Argument(help="The model to update, as named in the repository (e.g. text_encoder).")],
    version: Annotated[int, typer.Option("--version", help="The version to promote: a directory MODEL/N/ of the repository, built (model.pt, reference.npz).")],
    repo: Annotated[Optional[Path], typer.Option("--repo", help="Model repository to publish N from. Default: model_repo/ of the checkout.")] = None,
    state_dir: StateDir = None, url: Url = None, grpc_url: GrpcUrl = None, endpoint_url: EndpointUrl = None,
    bucket: Bucket = None, prefix: Prefix = None, region: Region = None, sse: Sse = None, kms_key_id: KmsKey = None,
    min_throughput: MinThroughput = None, max_p99_ms: MaxP99 = None, max_error_rate: MaxErr = None,
    smoke_profile: Profile = "quick", no_throughput: NoThroughput = False, json_path: Json = None,
    publish_timeout: PublishT = 300.0, load_timeout: LoadT = 300.0, gate_timeout: GateT = 600.0,
    compare_timeout: CompareT = 120.0, switch_timeout: SwitchT = 300.0, drain_timeout: DrainT = 120.0,
    compare_seconds: CompareS = 2.0,
) -> None:
    from hybridserve.promote.flow import Timeouts

    _run(model, version, state_dir=state_dir, url=url, grpc_url=grpc_url, endpoint_url=endpoint_url, bucket=bucket,
         prefix=prefix, region=region, sse=sse, kms_key_id=kms_key_id, repo=repo, min_throughput=min_throughput,
         max_p99_ms=max_p99_ms, max_error_rate=max_error_rate, smoke_profile=smoke_profile, json_path=json_path,
         timeouts=Timeouts(publish_timeout, load_timeout, gate_timeout, compare_timeout, switch_timeout, drain_timeout),
         compare_seconds=compare_seconds, no_throughput=no_throughput)


promote_command.__doc__ = "Serve version N of MODEL without downtime, once it passed the smoke gate on the serving Triton.\n" + _STEPS


def rollback_command(
    model: Annotated[str, typer.Argument(help="The model to roll back (e.g. text_encoder).")],
    state_dir: StateDir = None, url: Url = None, grpc_url: GrpcUrl = None, endpoint_url: EndpointUrl = None,
    bucket: Bucket = None, prefix: Prefix = None, region: Region = None, sse: Sse = None, kms_key_id: KmsKey = None,
    min_throughput: MinThroughput = None, max_p99_ms: MaxP99 = None, max_error_rate: MaxErr = None,
    smoke_profile: Profile = "quick", no_throughput: NoThroughput = False, json_path: Json = None,
    load_timeout: LoadT = 300.0, gate_timeout: GateT = 600.0,
    compare_timeout: CompareT = 120.0, switch_timeout: SwitchT = 300.0, drain_timeout: DrainT = 120.0,
    compare_seconds: CompareS = 2.0,
) -> None:
    from hybridserve.promote.flow import Timeouts

    _run(model, None, state_dir=state_dir, url=url, grpc_url=grpc_url, endpoint_url=endpoint_url, bucket=bucket,
         prefix=prefix, region=region, sse=sse, kms_key_id=kms_key_id, repo=None, min_throughput=min_throughput,
         max_p99_ms=max_p99_ms, max_error_rate=max_error_rate, smoke_profile=smoke_profile, json_path=json_path,
         timeouts=Timeouts(300.0, load_timeout, gate_timeout, compare_timeout, switch_timeout, drain_timeout),
         compare_seconds=compare_seconds, no_throughput=no_throughput)


rollback_command.__doc__ = (
    "Serve the version MODEL served before its last passing promotion again (from the promotion history), "
    "gated like a promotion (its files are already in the store: no publish step).\n" + _STEPS
)
