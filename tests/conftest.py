"""Shared fixtures. Every server is real (moto_server, weed, tritonserver): nothing that can run here is mocked.

Safe under pytest-xdist (`make test` runs `-n 2`): servers bind free loopback ports, data lives in tmp dirs,
and the one thing shared between workers (the built model repository) is built once under a file lock.

Fixtures (all session-scoped: a server start costs seconds; tests must not depend on another test's objects):

- `moto_server`       -> hybridserve.local.objectstore.MotoServer, running (S3 + KMS in memory).
- `moto_endpoint`     -> its S3Endpoint (`.client("s3")`, `.client("kms")`, `.env()`, `.triton_uri(b, p)`).
- `seaweed`           -> hybridserve.local.objectstore.SeaweedFS, running, data in a tmp dir (`.data_dir`),
                         SSE-S3 key-encryption key at `.kek_path`.
- `seaweed_endpoint`  -> its S3Endpoint; accepts only its own generated key pair.
- `built_model_repo`  -> Path to a built copy of model_repo/ (artifacts and references), shared by all workers.
                         Treat it as read-only; copy it if a test needs to change it.
- `kit_server`        -> tritonserver serving every model of `built_model_repo` from moto's S3, synced under SSE-KMS
                         with a key of its own (`.server`, `.endpoint`, `.bucket`, `.prefix`, `.key_arn`, `.report`):
                         one start for the tests of a worker that need the kit's models served. Load, unload or
                         stop nothing on it.
- `example_plans`     -> {stack name: infra.plan.Plan} of every example stack (stacks/), planned once per test run
                         and shared by all workers (a plan costs seconds). Read-only: copy.deepcopy to change one.

Function-scoped:
- `unique_bucket`     -> a fresh bucket name ("t-" + 12 hex), since the stores above are shared by a session.
- `example_checkout`  -> a checkout root (Pulumi.yaml, a copy of stacks/), cwd and HYBRIDSERVE_ROOT set to it.
- `repo`              -> a private copy of the built model repository, cwd its parent.

Tests that use a server fixture start real processes: mark them `@pytest.mark.servers`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

# Support windows (EKS versions) are judged on today's date; the suite judges them on a fixed one so it
# gives the same answer next year. `hybridserve validate` in a pipeline uses the real date.
os.environ.setdefault("HYBRIDSERVE_TODAY", "2026-12-01")

# A runner that starts the suite in the background of a non-interactive shell (`cmd &`) hands it SIGINT
# ignored, and every child inherits that: the Ctrl-C tests would then test nothing and fail. Give this
# process (each xdist worker loads this file) and its children the default Ctrl-C back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp dir all xdist workers of this run share (the parent of the per-worker base temp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    from hybridserve.local.objectstore import MotoServer

    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    with server:
        yield server


@pytest.fixture(scope="session")
def moto_endpoint(moto_server):
    return moto_server.endpoint


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    from hybridserve.local.objectstore import SeaweedFS

    root = tmp_path_factory.mktemp("seaweed")
    store = SeaweedFS(root / "data", kek_path=root / "sse.kek", log_path=root / "weed.log")
    with store:
        yield store


@pytest.fixture(scope="session")
def seaweed_endpoint(seaweed):
    return seaweed.endpoint


@pytest.fixture
def unique_bucket() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def built_model_repo(tmp_path_factory) -> Path:
    """model_repo/ copied and built once per test run; workers wait on a lock instead of building twice."""
    from hybridserve.models.build import build_models
    from hybridserve.models.repository import ensure_valid
    from hybridserve.paths import model_repo_dir

    shared = _shared_tmp(tmp_path_factory)
    target = shared / "built_model_repo"
    with open(shared / "built_model_repo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "built_model_repo.ok").exists():
            staging = shared / "built_model_repo.partial"
            shutil.rmtree(staging, ignore_errors=True)
            # Copies the work tree's artifacts too when present, so build_models only rebuilds what is stale.
            shutil.copytree(model_repo_dir(), staging, ignore=shutil.ignore_patterns("__pycache__"))
            build_models(staging, force=False, progress=False)
            ensure_valid(staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            (shared / "built_model_repo.ok").touch()  # outside the repo: sync and Triton would see it
    return target


@pytest.fixture(scope="session")
def kit_server(built_model_repo, moto_endpoint, tmp_path_factory):
    from types import SimpleNamespace

    from hybridserve.local.triton import TritonServer, live_group_members
    from hybridserve.models.repository import describe_repository
    from hybridserve.sync import SyncTarget, sync_repository

    ep = moto_endpoint
    root = tmp_path_factory.mktemp("kit_server")
    bucket, prefix = f"t-{uuid.uuid4().hex[:12]}", "models"
    key_arn = ep.client("kms").create_key(Description="stack key")["KeyMetadata"]["Arn"]
    ep.client("s3").create_bucket(Bucket=bucket)
    report = sync_repository(
        built_model_repo,
        SyncTarget(bucket=bucket, prefix=prefix, endpoint_url=ep.url, region=ep.region, access_key=ep.access_key,
                   secret_key=ep.secret_key, sse="aws:kms", kms_key_id=key_arn),
        show_progress=False,
    )
    server = TritonServer(ep.triton_uri(bucket, prefix), describe_repository(built_model_repo).names,
                          log_path=root / "triton.log", env=ep.env(), work_dir=root / "work", startup_timeout=240)
    server.start()
    try:
        yield SimpleNamespace(server=server, endpoint=ep, bucket=bucket, prefix=prefix, key_arn=key_arn, report=report)
    finally:
        pid = server.pid
        server.stop()
        assert not server.running() and live_group_members(pid) == []  # nor its Python backend stubs


@pytest.fixture(scope="session", autouse=True)
def _program_model_repo(built_model_repo):
    """The Pulumi program reads (and would build) the model repository: plans use the built copy, not the checkout."""
    from infra.components.serving import MODEL_REPO_ENV

    previous = os.environ.get(MODEL_REPO_ENV)
    os.environ[MODEL_REPO_ENV] = str(built_model_repo)
    yield
    if previous is None:
        os.environ.pop(MODEL_REPO_ENV, None)
    else:
        os.environ[MODEL_REPO_ENV] = previous


@pytest.fixture(scope="session")
def example_plans(tmp_path_factory, _program_model_repo) -> dict:
    """The example stacks' offline plans, made by the first worker that asks (under a lock) and read by the others."""
    import pickle

    from hybridserve.paths import repo_root
    from hybridserve.stackconfig import stack_files
    from infra.plan import plan_stack_file

    shared = _shared_tmp(tmp_path_factory)
    cache = shared / "example_plans.pickle"
    with open(shared / "example_plans.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cache.exists():
            plans = {name: plan_stack_file(path) for name, path in stack_files(repo_root() / "stacks").items()}
            partial = cache.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(plans))
            partial.rename(cache)
            return plans
    return pickle.loads(cache.read_bytes())


@pytest.fixture
def example_checkout(tmp_path, monkeypatch) -> Path:
    """A checkout root holding Pulumi.yaml and a copy of the example stacks, used from its root as a user
    would (cwd and HYBRIDSERVE_ROOT); break the copies, not the originals."""
    from hybridserve.paths import repo_root

    shutil.copy(repo_root() / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(repo_root() / "stacks", tmp_path / "stacks")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def repo(built_model_repo, tmp_path, monkeypatch) -> Path:
    """A private copy of the built repository; cwd is its parent, so problems read `model_repo/...`."""
    copy = tmp_path / "model_repo"
    shutil.copytree(built_model_repo, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    return copy
