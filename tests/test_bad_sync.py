"""Bad input to `hybridserve sync` and the publication: refused before anything is contacted or uploaded.

A bucket name or region that cannot work is named by its flag, before any request (so it is never
reported as an unreachable endpoint or a missing bucket); a model repository that `models validate`
refuses is never synced; symbolic links are never followed out of the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cliutil import run_cli
from hybridserve.errors import UserError
from hybridserve.local.process import free_port
from hybridserve.sync import SyncTarget, sync_repository
from hybridserve.sync.engine import check_target
from hybridserve.sync.errors import EXIT_BAD_ARGUMENT, EXIT_INVALID_REPOSITORY, EXIT_UNREACHABLE
from hybridserve.sync.scan import scan_repository

SECRET = "aws_secret_access_key = never-upload-me"


# --------------------------------------------------------------------------------------------- bucket and region


@pytest.mark.parametrize(
    "bucket, fragment",
    [
        ("My_Bucket", "3-63 lowercase letters"),
        ("ab", "3-63 lowercase letters"),
        ("a" * 64, "3-63 lowercase letters"),
        ("-models", "starting and ending with a letter or digit"),
        ("models.", "starting and ending with a letter or digit"),
        ("team..models", "no '..'"),
        ("10.0.0.12", "must not look like an IP address"),
        ("xn--models", "prefix or suffix S3 reserves"),
        ("models-s3alias", "prefix or suffix S3 reserves"),
    ],
)
def test_a_bad_bucket_name_is_named_by_its_flag_before_any_request(bucket, fragment):
    # The endpoint is a closed port: had a request been sent, the error would be "cannot reach" (exit 21).
    target = SyncTarget(bucket=bucket, prefix="models", endpoint_url=f"http://127.0.0.1:{free_port()}", sse="AES256")
    with pytest.raises(UserError) as err:
        check_target(target)
    assert err.value.exit_code == EXIT_BAD_ARGUMENT
    assert f"bucket (--bucket) {bucket!r}" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("bucket", ["abc", "hybridserve-models", "acme.vision.models", "t-0123456789ab"])
def test_valid_bucket_names_pass(bucket):
    check_target(SyncTarget(bucket=bucket, prefix="models", endpoint_url="http://127.0.0.1:9", sse="AES256"))


@pytest.mark.parametrize(
    "region, fragment",
    [
        ("eu-west-9", "not an AWS region with S3; did you mean eu-west-"),
        ("eu-wset-1", "did you mean eu-west-1"),
        ("us_east_1", "not a region name"),
        ("", "not a region name"),
    ],
)
def test_a_bad_aws_region_is_named_by_its_flag_before_any_request(region, fragment):
    target = SyncTarget(bucket="hybridserve-models", prefix="models", region=region)
    with pytest.raises(UserError) as err:
        check_target(target)
    assert err.value.exit_code == EXIT_BAD_ARGUMENT
    assert f"region (--region) {region!r}: " in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-7"])
def test_aws_regions_of_every_partition_pass(region):
    check_target(SyncTarget(bucket="hybridserve-models", prefix="models", region=region))


def test_another_store_takes_its_own_region_name():
    """Swift's s3api signs for its `location` setting, e.g. RegionOne: only AWS regions are checked by name."""
    check_target(SyncTarget(bucket="models", prefix="m", endpoint_url="http://127.0.0.1:9", region="RegionOne", sse="AES256"))
    with pytest.raises(UserError, match="not an AWS region"):
        check_target(SyncTarget(bucket="models", prefix="m", region="RegionOne"))


def _sync_cli(args: list[str], capsys, monkeypatch, tmp_path) -> tuple[int, str]:
    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(tmp_path / "state"))
    code, _, err = run_cli(["sync", "--no-progress", "--repo", str(tmp_path), *args], capsys)
    return code, err


def test_cli_bad_bucket_names_the_flag_not_the_endpoint(capsys, monkeypatch, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    code, err = _sync_cli(["--bucket", "Team_Models", "--endpoint-url", closed, "--sse", "AES256"], capsys, monkeypatch, tmp_path)
    assert code == EXIT_BAD_ARGUMENT != EXIT_UNREACHABLE
    assert "bucket (--bucket) 'Team_Models' is not a valid bucket name" in err
    assert "cannot reach" not in err and "--endpoint-url" not in err


def test_cli_bad_region_names_the_flag_or_the_variable_it_came_from(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    code, err = _sync_cli(["--bucket", "hybridserve-models", "--region", "eu-west-9"], capsys, monkeypatch, tmp_path)
    assert code == EXIT_BAD_ARGUMENT
    assert "region (--region) 'eu-west-9': not an AWS region with S3" in err and "cannot reach" not in err

    monkeypatch.setenv("AWS_REGION", "eu_west_1")
    code, err = _sync_cli(["--bucket", "hybridserve-models"], capsys, monkeypatch, tmp_path)
    assert code == EXIT_BAD_ARGUMENT
    assert "region (from $AWS_REGION; --region overrides it) 'eu_west_1': not a region name" in err


# --------------------------------------------------------------------------------------------- links, without a store


def _write(path: Path, data: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


@pytest.fixture
def small_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    _write(repo / "m" / "config.pbtxt", 'name: "m"\nbackend: "python"\n')
    _write(repo / "m" / "1" / "model.py", "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n")
    return repo


def _outside_secret(repo: Path) -> Path:
    return _write(repo.parent / "credentials", f"[default]\n{SECRET}\n")


LINKS = {
    # case: (make it, path named, part of the message)
    "out of the repository": (lambda r: (r / "m" / "1" / "creds").symlink_to(_outside_secret(r)), "m/1/creds", "outside the repository"),
    "dangling": (lambda r: (r / "m" / "1" / "weights.bin").symlink_to("/nonexistent/weights.bin"), "m/1/weights.bin", "dangling link"),
    "loop": (lambda r: ((r / "m" / "a").symlink_to("b"), (r / "m" / "b").symlink_to("a")), "m/a", "loops"),
    "to a directory": (lambda r: (r / "m" / "1" / "up").symlink_to(".."), "m/1/up", "symbolic link to a directory"),
    "to a directory out of the repository": (
        lambda r: (r / "m" / "1" / "home").symlink_to(_outside_secret(r).parent), "m/1/home", "outside the repository",
    ),
    "model directory": (lambda r: (r / "m2").symlink_to("m"), "m2", "symbolic link to a directory"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_scan_refuses_a_bad_link_naming_it(small_repo, case):
    make, path, fragment = LINKS[case]
    scan_repository(small_repo)  # positive control
    make(small_repo)
    with pytest.raises(UserError) as err:
        scan_repository(small_repo)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert any(d.startswith(f"{path}: ") and fragment in d for d in err.value.details), err.value.details
    assert SECRET not in str(err.value)


def test_scan_takes_a_link_to_a_file_of_the_repository(small_repo):
    (small_repo / "m" / "2").mkdir()
    (small_repo / "m" / "2" / "model.py").symlink_to("../1/model.py")
    (model,) = scan_repository(small_repo)
    linked = next(f for f in model.files if f.rel == "m/2/model.py")
    original = next(f for f in model.files if f.rel == "m/1/model.py")
    assert linked.version == 2 and linked.sha256 == original.sha256 and linked.size == original.size


def test_publication_refuses_a_link_out(built_model_repo, tmp_path):
    """The Pulumi program's digest and the rendering walk the files as the sync does."""
    from hybridserve.publish import Target, render_repository, repository_digest

    repo = Path(shutil.copytree(built_model_repo, tmp_path / "model_repo"))
    (repo / "text_encoder" / "1" / "creds").symlink_to(_outside_secret(repo))
    gpu = Target("aws", gpu=True)
    for attempt in (lambda: repository_digest(repo, gpu), lambda: render_repository(repo, tmp_path / "out", gpu)):
        with pytest.raises(UserError) as err:
            attempt()
        assert "text_encoder/1/creds: is a symbolic link to" in str(err.value) and "outside the repository" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing rendered


# --------------------------------------------------------------------------------------------- against a store


@pytest.fixture
def moto_target(moto_endpoint, unique_bucket):
    s3 = moto_endpoint.client()
    s3.create_bucket(Bucket=unique_bucket)
    target = SyncTarget(
        bucket=unique_bucket,
        prefix="models",
        endpoint_url=moto_endpoint.url,
        region=moto_endpoint.region,
        access_key=moto_endpoint.access_key,
        secret_key=moto_endpoint.secret_key,
        sse="AES256",
    )
    return target, s3


def _keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.fixture
def repo(built_model_repo, tmp_path) -> Path:
    return Path(shutil.copytree(built_model_repo, tmp_path / "model_repo"))


BAD_REPOSITORIES = {
    "0-byte model.pt": (lambda r: (r / "text_encoder" / "1" / "model.pt").write_bytes(b""), "text_encoder/1/model.pt: artifact: is empty"),
    "text model.pt": (lambda r: (r / "image_classifier" / "1" / "model.pt").write_text("oops\n"), "does not load as TorchScript"),
    "misspelt backend": (
        lambda r: (r / "text_encoder" / "config.pbtxt").write_text(
            (r / "text_encoder" / "config.pbtxt").read_text().replace('backend: "python"', 'backend: "pytorh"')
        ),
        'backend: "pytorh" is not a Triton backend',
    ),
    "link out": (lambda r: (r / "text_encoder" / "1" / "creds").symlink_to(_outside_secret(r)), "text_encoder/1/creds: is a symbolic link to"),
    "dangling link": (lambda r: (r / "image_classifier" / "1" / "x.bin").symlink_to("gone"), "image_classifier/1/x.bin: is a symbolic link to gone"),
    "link loop": (lambda r: (r / "image_classifier" / "loop").symlink_to("loop"), "image_classifier/loop: is a symbolic link that loops"),
    "directory link": (lambda r: (r / "image_classifier" / "2").symlink_to("1"), "image_classifier/2: is a symbolic link to a directory"),
    # Layout siblings: each would sync files Triton then ignores or refuses.
    "no version directory": (lambda r: shutil.rmtree(r / "text_encoder" / "1"), "text_encoder: version directory: none"),
    "version directory not an integer": (
        lambda r: shutil.copytree(r / "text_encoder" / "1", r / "text_encoder" / "v2"), "text_encoder/v2: version directory: \"v2\" is not a positive integer",
    ),
    "empty version directory": (lambda r: (r / "text_encoder" / "2").mkdir(), "text_encoder/2/model.py: artifact: missing"),
    "config name differs from the directory": (
        lambda r: (r / "text_encoder" / "config.pbtxt").write_text(
            (r / "text_encoder" / "config.pbtxt").read_text().replace('name: "text_encoder"', 'name: "encoder"')
        ),
        'text_encoder/config.pbtxt: name: "encoder" does not match the directory name',
    ),
}


# Refused by the sync's own walk, before any file is read: nothing at all reaches the store. The other cases
# pass the walk and are refused by the validator, which runs alongside the early uploads (engine docstring).
WALK_REFUSES = {"link out", "dangling link", "link loop", "directory link", "no version directory"}


@pytest.mark.servers
@pytest.mark.parametrize("case", list(BAD_REPOSITORIES))
def test_sync_publishes_nothing_from_a_repository_validate_refuses(moto_target, repo, case):
    target, s3 = moto_target
    make, fragment = BAD_REPOSITORIES[case]
    make(repo)
    with pytest.raises(UserError) as err:
        sync_repository(repo, target, show_progress=False)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert fragment in str(err.value), str(err.value)
    keys = _keys(s3, target.bucket)
    if case in WALK_REFUSES:
        assert keys == set()
    else:  # early uploads of the repository's files at most: no config.pbtxt, no manifest
        assert {k for k in keys if k.endswith("/config.pbtxt") or not (repo / k.removeprefix("models/")).is_file()} == set()


@pytest.mark.servers
def test_sync_cli_refuses_a_link_out_without_a_traceback(moto_endpoint, moto_target, repo, capsys, monkeypatch, tmp_path):
    target, s3 = moto_target
    (repo / "text_encoder" / "1" / "creds").symlink_to(_outside_secret(repo))
    for name, value in moto_endpoint.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(tmp_path / "state"))
    code, _, err = run_cli(
        ["sync", "--bucket", target.bucket, "--endpoint-url", moto_endpoint.url, "--sse", "AES256", "--repo", str(repo), "--no-progress"],
        capsys,
    )
    assert code == EXIT_INVALID_REPOSITORY
    assert "text_encoder/1/creds: is a symbolic link to" in err and SECRET not in err
    assert _keys(s3, target.bucket) == set()


@pytest.mark.servers
def test_sync_uploads_a_file_link_inside_the_repository_as_its_target(moto_target, repo):
    """A new version sharing version 1's weights by links: uploaded as files (S3 has no links), then published."""
    target, s3 = moto_target
    version = repo / "image_classifier" / "2"
    version.mkdir()
    shutil.copyfile(repo / "image_classifier" / "1" / "model.py", version / "model.py")
    for name in ("model.pt", "reference.npz"):
        (version / name).symlink_to(f"../1/{name}")
    report = sync_repository(repo, target, show_progress=False)
    assert report.published["image_classifier"] == [2]
    body = s3.get_object(Bucket=target.bucket, Key="models/image_classifier/2/model.pt")["Body"].read()
    assert body == (repo / "image_classifier" / "1" / "model.pt").read_bytes()
