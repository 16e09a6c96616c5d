"""The stores, fixtures and helpers of the sync tests: test_sync.py, test_sync_prune_errors.py, test_sync_fastpath.py
(three files so that pytest-xdist's --dist loadfile runs them on different workers).

Buckets are plain (no default encryption) and versioned: the encryption seen on an object is what the sync
asked for, and the list of object versions shows every write, so "wrote nothing" can be checked exactly.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hybridserve.local.objectstore import S3Endpoint
from hybridserve.sync import SyncReport, SyncTarget, sync_repository


PREFIX = "models"


@dataclass
class Store:
    name: str
    endpoint: S3Endpoint
    bucket: str
    kms_key: dict | None  # KeyMetadata of the key the target uses (moto only)

    @property
    def s3(self):
        return self.endpoint.client()

    def target(self, **overrides) -> SyncTarget:
        kwargs = dict(
            bucket=self.bucket,
            prefix=PREFIX,
            endpoint_url=self.endpoint.url,
            region=self.endpoint.region,
            access_key=self.endpoint.access_key,
            secret_key=self.endpoint.secret_key,
            sse="aws:kms" if self.kms_key else "AES256",
            kms_key_id=self.kms_key["KeyId"] if self.kms_key else None,
        )
        kwargs.update(overrides)
        return SyncTarget(**kwargs)

    def keys(self, prefix: str = PREFIX + "/") -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def writes(self) -> int:
        """Object versions plus delete markers in the bucket: grows with every PUT or DELETE."""
        r = self.s3.list_object_versions(Bucket=self.bucket)
        return len(r.get("Versions", [])) + len(r.get("DeleteMarkers", []))

    def head(self, key: str) -> dict:
        return self.s3.head_object(Bucket=self.bucket, Key=key)

    def published(self, model: str) -> list[int]:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{model}/config.pbtxt")["Body"].read().decode()
        config = text_format.Parse(body, model_config_pb2.ModelConfig())
        assert config.version_policy.WhichOneof("policy_choice") == "specific"
        return list(config.version_policy.specific.versions)


_worker_state: Path | None = None


def worker_state() -> Path:
    """A state dir (HYBRIDSERVE_STATE_DIR) per test process, i.e. per xdist worker, shared by its tests."""
    global _worker_state
    if _worker_state is None:
        _worker_state = Path(tempfile.mkdtemp(prefix="hybridserve-sync-state-"))
        atexit.register(shutil.rmtree, _worker_state, True)
    return _worker_state


def cached_sync(repo_dir: Path, target: SyncTarget, **kwargs) -> SyncReport:
    """sync_repository as the CLI runs it: with the hash cache in a state dir, here the worker's. Content that
    validated once (the built repository, at the worker's first sync) is not validated again, which saves a
    child process importing torch and running every artifact per sync; content that never validated (a test's
    changed file) still is. For the tests that are not about validation: the tests of validation itself, and
    one ordinary test per file, call sync_repository without a cache (validate every time) or with their own.
    """
    return sync_repository(repo_dir, target, hash_cache=worker_state() / "sync-hashes.json", **kwargs)


def _new_bucket(endpoint: S3Endpoint, bucket: str) -> None:
    s3 = endpoint.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture(params=["moto", "seaweed"])
def store(request, unique_bucket) -> Store:
    if request.param == "moto":
        endpoint = request.getfixturevalue("moto_endpoint")
        key = endpoint.client("kms").create_key(Description="sync test")["KeyMetadata"]
    else:
        endpoint = request.getfixturevalue("seaweed_endpoint")
        key = None
    _new_bucket(endpoint, unique_bucket)
    return Store(request.param, endpoint, unique_bucket, key)


@pytest.fixture
def moto_store(moto_endpoint, unique_bucket) -> Store:
    key = moto_endpoint.client("kms").create_key(Description="sync test")["KeyMetadata"]
    _new_bucket(moto_endpoint, unique_bucket)
    return Store("moto", moto_endpoint, unique_bucket, key)


@pytest.fixture
def repo(built_model_repo, tmp_path) -> Path:
    """A private copy of the built repository: tests change it."""
    return Path(shutil.copytree(built_model_repo, tmp_path / "model_repo"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _local_files(repo: Path) -> dict[str, Path]:
    """Object key -> local file, for every file the sync should upload as is (configs are rewritten)."""
    return {
        f"{PREFIX}/{p.relative_to(repo).as_posix()}": p
        for p in repo.rglob("*")
        if p.is_file() and p.name != "config.pbtxt" and "__pycache__" not in p.parts
    }


def _models(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file())


def _new_version(repo: Path, model: str, version: int, extra: bytes | None = None) -> Path:
    """A new version directory: a copy of version 1 (valid for the models module), plus an optional big file."""
    vdir = repo / model / str(version)
    shutil.copytree(repo / model / "1", vdir)
    if extra is not None:
        (vdir / "extra.bin").write_bytes(extra)
    return vdir
