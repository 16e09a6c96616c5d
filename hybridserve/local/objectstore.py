"""Local S3-compatible object stores: SeaweedFS (the plane's persistent, encrypted store) and moto (tests).

Both run as supervised children (`ManagedProcess`) on free loopback ports, so tests can start several
side by side and nothing outlives its owner.

SeaweedFS runs as `weed server` (master + volume + filer + S3 in one process). `weed mini` is the same
all-in-one idea but also opens an admin UI, WebDAV and more on fixed default ports; `weed server` answers
S3 in about 3 s with every port we hand it, so the plane uses that.

Encryption at rest is SSE-S3: weed encrypts each object's data key with a key-encryption key (KEK) it reads
from WEED_S3_SSE_KEK. The kit generates the KEK once and keeps it in a 0600 file in the state dir. Access
needs the key pair of one S3 identity the kit also generates once (an `-s3.config` file, 0600); any other
key pair is refused.
"""

from __future__ import annotations

import abc
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hybridserve.errors import UserError
from hybridserve.local.process import ManagedProcess, free_ports, read_since, tail

DEFAULT_REGION = "us-east-1"
# How long `weed server` gets after SIGTERM before SIGKILL. weed 4.48 spends its first 15 s of a SIGTERM waiting
# for the filer's gRPC streams to close (the log: "gRPC server graceful stop timed out after 15s") and only then
# shuts its servers down: a longer wait that still ends in SIGKILL buys nothing. Its stores are crash-safe.
WEED_TERM_WAIT_S = 0.5


def venv_binary(name: str) -> str:
    """A console script next to the running interpreter (the venv's bin/), else one on PATH."""
    # Not resolved: .venv/bin/python is a symlink to the system interpreter, the scripts sit beside the link.
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise UserError(f"`{name}` not found next to {sys.executable} nor on PATH. Run `make install`.", exit_code=3)


@dataclass(frozen=True)
class S3Endpoint:
    """Where and how to reach one S3 API. `host_port` is derived from `url` when not given."""

    url: str
    access_key: str
    secret_key: str
    region: str = DEFAULT_REGION
    host_port: str = field(default="")

    def __post_init__(self) -> None:
        if not self.host_port:
            object.__setattr__(self, "host_port", self.url.split("://", 1)[-1].rstrip("/"))

    def client(self, service: str = "s3"):
        """A boto3 client for this endpoint: path-style (no DNS for bucket names on loopback), bounded waits."""
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        return boto3.client(
            service,
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config,
        )

    def triton_uri(self, bucket: str, prefix: str = "") -> str:
        """The `--model-repository` value: Triton takes a host:port in an s3:// URI for non-AWS endpoints."""
        path = "/".join(p.strip("/") for p in (bucket, prefix) if p.strip("/"))
        return f"s3://{self.host_port}/{path}"

    def env(self) -> dict[str, str]:
        """Credentials for a child process (tritonserver reads them from its environment)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "S3Endpoint":
        return cls(**{k: data[k] for k in ("url", "access_key", "secret_key", "region", "host_port") if k in data})


# --------------------------------------------------------------------------------------------- secrets


def _private_file(path: Path, make) -> str:
    """Read a secret file, creating it once with mode 0600 (O_EXCL: two starters never write two keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(make())
    # An older file that others can read is tightened rather than trusted as is.
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    return path.read_text().strip()


def load_or_create_kek(path: Path) -> str:
    """The SSE-S3 key-encryption key: 64 hex characters (32 bytes), generated once, kept 0600."""
    kek = _private_file(path, lambda: secrets.token_hex(32) + "\n")
    if len(kek) != 64 or any(c not in "0123456789abcdefABCDEF" for c in kek):
        raise UserError(
            f"{path}: the object store's key-encryption key must be 64 hex characters (32 bytes). "
            "Restore the original file; without it the stored objects cannot be decrypted. "
            "Only for a throw-away store: delete the file and the objectstore directory to start afresh.",
            exit_code=2,
        )
    return kek


def load_or_create_identity(path: Path) -> tuple[str, str]:
    """The one S3 identity weed accepts, as its `-s3.config` JSON; returns (access_key, secret_key)."""

    def make() -> str:
        return json.dumps(
            {
                "identities": [
                    {
                        "name": "hybridserve",
                        "credentials": [
                            {"accessKey": "HS" + secrets.token_hex(9).upper(), "secretKey": secrets.token_urlsafe(30)}
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            },
            indent=2,
        ) + "\n"

    text = _private_file(path, make)
    try:
        cred = json.loads(text)["identities"][0]["credentials"][0]
        return cred["accessKey"], cred["secretKey"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(
            f"{path}: not a SeaweedFS S3 identity file; expected "
            '{"identities": [{"name": ..., "credentials": [{"accessKey": ..., "secretKey": ...}], "actions": [...]}]}. '
            "Delete it to have a new identity generated.",
            exit_code=2,
        ) from None


# --------------------------------------------------------------------------------------------- SeaweedFS


class _S3Server(abc.ABC):
    """What SeaweedFS and MotoServer share: a supervised process answering S3 at `endpoint`."""

    display_name = "the object store"
    process: ManagedProcess | None
    _endpoint: S3Endpoint | None

    # free_ports closes its sockets before the server binds them; another process can take one in
    # between, so a start that dies of "address already in use" is retried on new ports.
    _START_ATTEMPTS = 3

    @abc.abstractmethod
    def _launch(self) -> tuple[ManagedProcess, S3Endpoint]:
        """Pick ports, build the (not yet started) process and the endpoint it will answer on."""

    def _start_answering_s3(self):
        if self.process is not None:
            return self
        for attempt in range(self._START_ATTEMPTS):
            proc, endpoint = self._launch()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            proc.start()
            self.process = proc
            client = endpoint.client()
            try:
                proc.wait_until(
                    lambda: client.list_buckets() is not None, timeout=self.startup_timeout, what="ready to answer S3"
                )
            except UserError:
                log = read_since(self.log_path, log_offset)
                self.stop()
                if "address already in use" in log.lower() and attempt < self._START_ATTEMPTS - 1:
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            self._endpoint = endpoint
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def endpoint(self) -> S3Endpoint:
        if self._endpoint is None:
            raise RuntimeError(f"{self.display_name} is not running: call start() or use it as a context manager")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        """Bounded (ManagedProcess: SIGTERM, a short wait, then SIGKILL to the whole group). Idempotent."""
        proc, self.process, self._endpoint = self.process, None, None
        if proc is not None:
            proc.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class SeaweedFS(_S3Server):
    """`weed server` with S3 on loopback, data in `data_dir` (kept across runs), SSE-S3 under a 0600 KEK.

    kek_path defaults to `<data_dir>.kek` and the S3 identity to `<data_dir>.s3.json`, both beside the data
    directory (the plane puts them in the state dir).
    """

    display_name = "SeaweedFS"

    _PORT_NAMES = (
        "master",
        "master.grpc",
        "volume",
        "volume.grpc",
        "filer",
        "filer.grpc",
        "s3",
        "s3.grpc",
    )

    def __init__(
        self,
        data_dir: Path,
        *,
        kek_path: Path | None = None,
        identity_path: Path | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
        region: str = DEFAULT_REGION,
    ):
        self.data_dir = Path(data_dir)
        self.kek_path = Path(kek_path) if kek_path else self.data_dir.with_name(self.data_dir.name + ".kek")
        self.identity_path = (
            Path(identity_path) if identity_path else self.data_dir.with_name(self.data_dir.name + ".s3.json")
        )
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        self.startup_timeout = startup_timeout
        self.region = region
        self.ports: dict[str, int] = {}
        self.process: ManagedProcess | None = None
        self._endpoint: S3Endpoint | None = None

    def _argv(self, weed: str) -> list[str]:
        p = self.ports
        return [
            weed,
            "server",
            f"-dir={self.data_dir}",
            # Fixed master dir: by default it is named after the master port, which changes every run.
            f"-master.dir={self.data_dir / 'master'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.preStopSeconds=0",
            "-volume.max=0",  # as many volumes as the disk allows
            "-master.volumeSizeLimitMB=256",  # small volumes: a dev store, not 30 GB files
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.config={self.identity_path}",
            # These default to fixed ports (8181, 9101) and would collide between parallel instances.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self) -> "SeaweedFS":
        if self.process is not None:
            return self
        self._weed = venv_binary("weed")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.data_dir / "master").mkdir(exist_ok=True, mode=0o700)
        self._env = dict(os.environ, WEED_S3_SSE_KEK=load_or_create_kek(self.kek_path))
        self._identity = load_or_create_identity(self.identity_path)
        return self._start_answering_s3()

    def _launch(self) -> tuple[ManagedProcess, S3Endpoint]:
        self.ports = dict(zip(self._PORT_NAMES, free_ports(len(self._PORT_NAMES))))
        access_key, secret_key = self._identity
        endpoint = S3Endpoint(url=f"http://127.0.0.1:{self.ports['s3']}", access_key=access_key, secret_key=secret_key, region=self.region)
        # weed does not exit on SIGTERM in time: a short wait, then SIGKILL (see WEED_TERM_WAIT_S).
        proc = ManagedProcess("weed server", self._argv(self._weed), log_path=self.log_path, env=self._env,
                              term_timeout=WEED_TERM_WAIT_S)
        return proc, endpoint

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)



# --------------------------------------------------------------------------------------------- moto


class MotoServer(_S3Server):
    """moto_server (S3, KMS, ... in memory) on a free loopback port; for tests and the SSE-KMS path."""

    display_name = "moto_server"

    def __init__(self, *, log_path: Path | None = None, startup_timeout: float = 60.0, region: str = DEFAULT_REGION):
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="hybridserve-moto-")) / "moto.log"
        self.startup_timeout = startup_timeout
        self.region = region
        self.port: int | None = None
        self.process: ManagedProcess | None = None
        self._endpoint: S3Endpoint | None = None

    def start(self) -> "MotoServer":
        self._moto = venv_binary("moto_server")
        return self._start_answering_s3()

    def _launch(self) -> tuple[ManagedProcess, S3Endpoint]:
        (self.port,) = free_ports(1)
        endpoint = S3Endpoint(url=f"http://127.0.0.1:{self.port}", access_key="testing", secret_key="testing", region=self.region)
        proc = ManagedProcess("moto_server", [self._moto, "-H", "127.0.0.1", "-p", str(self.port)], log_path=self.log_path, term_timeout=5)
        return proc, endpoint


# --------------------------------------------------------------------------------------------- buckets

# What stores answer when they lack an S3 feature (SeaweedFS: NotImplemented for public access blocks).
_UNSUPPORTED = {"NotImplemented", "NotImplementedError", "MethodNotAllowed", "UnsupportedOperation", "XNotImplemented"}


@dataclass
class BucketSummary:
    """What `ensure_bucket` found or set, read back from the store."""

    bucket: str
    created: bool
    versioning: str  # "Enabled" when all went well
    encryption: str  # e.g. "AES256" or "aws:kms (key ...)"
    public_access_block: str  # "all blocked" or why not
    notes: list[str] = field(default_factory=list)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "") or ""


def ensure_bucket(
    endpoint: S3Endpoint,
    bucket: str,
    *,
    sse: Literal["AES256", "aws:kms"] = "AES256",
    kms_key_id: str | None = None,
) -> BucketSummary:
    """Create `bucket` if missing; make sure it is versioned, encrypted by default and not public.

    Idempotent. A store that lacks public access blocks is reported in the summary, not an error.
    """
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if sse not in ("AES256", "aws:kms"):
        raise UserError(f"sse={sse!r} is not a bucket default encryption; valid: 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS).")
    if kms_key_id and sse != "aws:kms":
        raise UserError(f"kms_key_id is only valid with sse='aws:kms' (got sse={sse!r}).")

    s3 = endpoint.client()
    notes: list[str] = []
    try:
        created = False
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                kwargs: dict[str, Any] = {"Bucket": bucket}
                if endpoint.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.region}
                try:
                    s3.create_bucket(**kwargs)
                    created = True
                except ClientError as cexc:
                    # Another starter won the race: fine, it is ours either way.
                    if _error_code(cexc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            elif code in ("403", "AccessDenied", "Forbidden"):
                # HEAD answers carry no error code: ask again with a call that says whether the keys are wrong.
                s3.list_buckets()
                raise UserError(
                    f"bucket {bucket!r} at {endpoint.url} exists but these credentials may not use it "
                    f"(access key {endpoint.access_key}); pick another bucket name or the right credentials."
                ) from None
            else:
                raise

        if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")

        default: dict[str, Any] = {"SSEAlgorithm": sse}
        if kms_key_id:
            default["KMSMasterKeyID"] = kms_key_id
        rule = {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": sse == "aws:kms"}
        if _current_encryption(s3, bucket) != default:
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
        current = _current_encryption(s3, bucket) or {}
        encryption = current.get("SSEAlgorithm", "none")
        if current.get("KMSMasterKeyID"):
            encryption += f" (key {current['KMSMasterKeyID']})"

        block = {k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}
        try:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            public_access_block = "all blocked" if all(got.get(k) for k in block) else f"partial: {got}"
        except ClientError as exc:
            if _error_code(exc) not in _UNSUPPORTED:
                raise
            public_access_block = "not supported by this store"
            notes.append(
                f"{endpoint.url} does not implement public access blocks ({_error_code(exc)}); "
                "it listens on loopback only and refuses any key pair but the configured one"
            )
    except ParamValidationError as exc:
        raise UserError(f"bucket name {bucket!r} is not valid: {exc}. Use 3-63 lowercase letters, digits, '-' and '.'.") from None
    except ClientError as exc:
        if _error_code(exc) == "InvalidBucketName":
            raise UserError(
                f"bucket name {bucket!r} is not valid: use 3-63 lowercase letters, digits, '-' and '.'."
            ) from None
        if _error_code(exc) in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise UserError(f"{endpoint.url} refused the credentials (access key {endpoint.access_key}).") from None
        raise UserError(f"S3 at {endpoint.url}, bucket {bucket!r}: {exc}") from None
    except BotoCoreError as exc:
        raise UserError(f"cannot reach S3 at {endpoint.url}: {exc}", exit_code=3) from None

    return BucketSummary(
        bucket=bucket,
        created=created,
        versioning=versioning,
        encryption=encryption,
        public_access_block=public_access_block,
        notes=notes,
    )


def _current_encryption(s3, bucket: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _error_code(exc) in ("ServerSideEncryptionConfigurationNotFoundError", "NoSuchEncryptionConfiguration", "404"):
            return None
        raise
    return dict(rules[0].get("ApplyServerSideEncryptionByDefault", {})) if rules else None
