"""The `tritonserver` command line, one function for every place the kit starts Triton.

The local plane (`hybridserve local up`, hybridserve/local/triton.py) and the Triton Deployment on the
clusters (infra/components/triton.py) both call `server_arguments`, so what the local run proves is
the argument set the clusters run: explicit model control with the stack's models loaded at start,
strict readiness, metrics on, a bounded drain on shutdown. Only where it listens and which backend
directory it reads differ (a wheel on this machine, the image's own in a container).

Stdlib only: the CLI imports the local plane for `--help`, and this module must not pull in Pulumi.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Listen:
    """Where the server listens: an address and the three ports."""

    address: str
    http_port: int
    grpc_port: int
    metrics_port: int


def server_arguments(
    model_repository: str,
    models: Sequence[str],
    listen: Listen,
    *,
    exit_timeout_s: int,
    gpu_metrics: bool,
    backend_directory: str | None = None,
) -> list[str]:
    """The arguments after the `tritonserver` binary.

    model_repository: a directory or s3://[https://]host:port/bucket/prefix (Triton's own forms).
    models: loaded at start (explicit model control: nothing else is ever loaded implicitly).
    exit_timeout_s: on SIGTERM Triton stops accepting requests and waits this long for in-flight ones.
    """
    if not models:
        raise ValueError("server_arguments: no model to load; explicit model control would serve nothing")
    args = [
        f"--model-repository={model_repository}",
        "--model-control-mode=explicit",
        *(f"--load-model={m}" for m in models),
        # Keep running when a model fails, so its reason can be read from the repository index;
        # strict readiness keeps such a server out of service (not ready) all the same.
        "--exit-on-error=false",
        "--strict-readiness=true",
        # The kit's configs are complete (`models validate` checks the backend and the inputs and outputs against the
        # model code) and model.py defines no auto_complete_config, so auto-complete adds nothing; with it, each
        # Python-backend load starts one more stub (importing model.py, so torch) only to ask for a config. Measured
        # 2026-12-01 on the 2-core machine: bench_tune --quick (six model loads) 154 s with it, 85 s without. Flag:
        # Triton 2.24 release notes, read 2026-12-01 (auto-complete on by default; replaces --strict-model-config).
        "--disable-auto-complete-config",
        f"--http-address={listen.address}",
        f"--http-port={listen.http_port}",
        f"--grpc-address={listen.address}",
        f"--grpc-port={listen.grpc_port}",
        "--allow-metrics=true",
        f"--metrics-address={listen.address}",
        f"--metrics-port={listen.metrics_port}",
        f"--allow-gpu-metrics={'true' if gpu_metrics else 'false'}",
        f"--exit-timeout-secs={exit_timeout_s}",
    ]
    if backend_directory is not None:
        args.insert(1, f"--backend-directory={backend_directory}")
    return args


# Triton reads S3 credentials from this JSON file when the variable names it (triton-inference-server/core
# src/filesystem/api.cc, LoadCredentials): the clusters mount it from a Kubernetes Secret (a file, not
# environment variables), and the local plane uses the same mechanism so its run proves it.
CREDENTIALS_FILE_ENV = "TRITON_CLOUD_CREDENTIAL_PATH"


def s3_credentials_file(key_id: str, secret_key: str, region: str) -> str:
    """The credential file's text: one entry for every s3:// path ("" matches all), as Triton's S3Credential reads it."""
    import json

    return json.dumps({"s3": {"": {"key_id": key_id, "secret_key": secret_key, "region": region, "session_token": "", "profile": ""}}}, indent=2)
