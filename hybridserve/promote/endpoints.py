"""Where promote and rollback act: the Triton endpoint and the store, from flags or the running local plane.

Flags win; what they leave open comes from the local plane's record (`<state-dir>/plane.json`, written by
`hybridserve local up --keep`), whose S3 secret key is read from its 0600 identity file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.sync.engine import SyncTarget, check_target


@dataclass
class Endpoints:
    triton_url: str
    grpc_url: str | None
    metrics_url: str | None
    store: SyncTarget
    source: str  # "flags" or the record's path, for the report


def resolve(*, state_dir: Path, url: str | None, grpc_url: str | None, endpoint_url: str | None, bucket: str | None,
            prefix: str | None, region: str | None, sse: str | None, kms_key_id: str | None) -> Endpoints:
    from hybridserve.local.plane import read_record, record_path, recorded_alive

    record = None
    if url is None or bucket is None:
        record = read_record(state_dir)
        if record is None or not recorded_alive(record) or "triton" not in record or "bucket" not in record.get("s3", {}):
            why = "no plane.json there" if record is None else "its processes are not running"
            raise UserError(
                f"no running local plane in --state-dir {state_dir} ({why}) to take the Triton endpoint (--url) and "
                "the store (--bucket, --endpoint-url) from: start one with `hybridserve local up --keep`, or pass "
                "--url HOST:PORT and --bucket (with --endpoint-url for a store other than AWS S3).",
                exit_code=2,
            )
    access_key = secret_key = None
    if record is not None:
        s3 = record["s3"]
        tr = record["triton"]
        url = url or tr["http"]
        grpc_url = grpc_url or tr.get("grpc")
        metrics_url = tr.get("metrics")
        if bucket is None:
            from hybridserve.local.objectstore import load_or_create_identity

            bucket, endpoint_url = s3["bucket"], endpoint_url or s3["url"]
            prefix = s3.get("prefix", "") if prefix is None else prefix
            region = region or s3.get("region")
            sse = sse or "AES256"  # the plane's store has no KMS
            access_key, secret_key = load_or_create_identity(Path(s3["identity_file"]))
        source = str(record_path(state_dir))
    else:
        metrics_url, source = None, "flags"
    url = url.removeprefix("http://").rstrip("/")
    target = SyncTarget(
        bucket=bucket, prefix=prefix or "", endpoint_url=endpoint_url, region=region or "us-east-1",
        access_key=access_key, secret_key=secret_key, sse=sse or "aws:kms", kms_key_id=kms_key_id,
    )
    check_target(target)
    return Endpoints(url, grpc_url, metrics_url, target, source)
