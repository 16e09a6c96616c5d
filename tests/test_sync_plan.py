"""The sync's local side without a store: repository scan, version policy, the published config.pbtxt."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hybridserve.errors import UserError
from hybridserve.sync.engine import SyncTarget, _check_target, _Encryption
from hybridserve.sync.errors import EXIT_BAD_ARGUMENT, EXIT_INVALID_REPOSITORY
from hybridserve.sync.scan import render_config, scan_repository, select_versions


def _config(text: str):
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def small_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    _write(repo / "m" / "config.pbtxt", 'name: "m"\nbackend: "python"\nmax_batch_size: 8\n'
           'version_policy { latest { num_versions: 2 } }\n'
           'parameters { key: "reference_atol" value { string_value: "1e-4" } }\n')
    for v in (1, 2, 10):
        _write(repo / "m" / str(v) / "model.py", f"version {v}\n")
    _write(repo / "m" / "labels.txt", "a\nb\n")
    _write(repo / "m" / "1" / "__pycache__" / "model.cpython-311.pyc", b"\0")
    _write(repo / "m" / "1" / ".DS_Store", b"\0")
    _write(repo / "m" / "1" / "model.pyc", b"\0")
    _write(repo / "README.md", "top-level files are not synced\n")
    _write(repo / ".git" / "HEAD", "ignored\n")
    return repo


def test_scan_finds_versions_model_files_and_hashes_skipping_junk(small_repo):
    (model,) = scan_repository(small_repo)
    assert model.name == "m"
    assert sorted(model.versions) == [1, 2, 10]
    rels = sorted(f.rel for f in model.files)
    assert rels == ["m/1/model.py", "m/10/model.py", "m/2/model.py", "m/labels.txt"]
    labels = next(f for f in model.files if f.rel == "m/labels.txt")
    assert labels.version is None
    assert labels.sha256 == hashlib.sha256(b"a\nb\n").hexdigest() and labels.size == 4
    assert model.config_file.rel == "m/config.pbtxt"


def test_scan_rejects_a_model_without_config_or_versions(tmp_path):
    _write(tmp_path / "a" / "1" / "model.py", "x")
    _write(tmp_path / "b" / "config.pbtxt", 'name: "b"')
    with pytest.raises(UserError) as err:
        scan_repository(tmp_path)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert any("a/: no config.pbtxt" in d for d in err.value.details)
    assert any("b/: no version directory" in d for d in err.value.details)


def test_scan_names_the_file_of_an_unparsable_config(tmp_path):
    _write(tmp_path / "m" / "config.pbtxt", "name: [unclosed")
    _write(tmp_path / "m" / "1" / "model.py", "x")
    with pytest.raises(UserError) as err:
        scan_repository(tmp_path)
    assert "m/config.pbtxt" in str(err.value) and err.value.exit_code == EXIT_INVALID_REPOSITORY


@pytest.mark.parametrize(
    "policy, ready, expected",
    [
        ("", [1, 2, 3], [3]),  # Triton's default: latest 1
        ("version_policy { latest { num_versions: 2 } }", [1, 2, 3], [2, 3]),
        ("version_policy { latest { num_versions: 2 } }", [1], [1]),
        ("version_policy { all { } }", [3, 1], [1, 3]),
        ("version_policy { specific { versions: [1, 3] } }", [1, 2], [1]),
        ("version_policy { specific { versions: [3] } }", [1, 2], []),
    ],
)
def test_select_versions_applies_the_users_policy_to_ready_versions(policy, ready, expected):
    assert select_versions(_config('name: "m" ' + policy), ready) == expected


def test_rendered_config_keeps_the_users_fields_and_lists_only_given_versions(small_repo):
    (model,) = scan_repository(small_repo)
    text = render_config(model, [2, 10]).decode()
    assert text.startswith("# Published by `hybridserve sync`")
    parsed = _config(text)
    assert list(parsed.version_policy.specific.versions) == [2, 10]
    assert parsed.version_policy.WhichOneof("policy_choice") == "specific"
    assert parsed.max_batch_size == 8 and parsed.backend == "python"
    assert parsed.parameters["reference_atol"].string_value == "1e-4"
    # The source config object is not changed by rendering.
    assert model.config.version_policy.WhichOneof("policy_choice") == "latest"


def test_encryption_match_accepts_key_id_or_arn_and_rejects_other_keys():
    arn = "arn:aws:kms:us-east-1:123456789012:key/1111-2222"
    kms = _Encryption("aws:kms", arn, frozenset({arn, "1111-2222"}), "")
    assert kms.matches("aws:kms", arn)
    assert kms.matches("aws:kms", "1111-2222")
    assert not kms.matches("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/3333")
    assert not kms.matches("AES256", None)
    assert _Encryption("AES256", None, None, "").matches("AES256", None)
    assert not _Encryption("AES256", None, None, "").matches(None, None)
    assert _Encryption("none", None, None, "").matches(None, None)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"bucket": ""}, "give a bucket name"),
        ({"bucket": "s3://b/x"}, "no slashes"),
        ({"sse": "aes"}, "'aws:kms', 'AES256', 'none'"),
        ({"sse": "AES256", "kms_key_id": "k"}, "only valid with sse 'aws:kms'"),
        ({"endpoint_url": "127.0.0.1:9000"}, "http:// or https://"),
        ({"access_key": "a"}, "both access_key and secret_key"),
    ],
)
def test_invalid_targets_are_user_errors_naming_the_field(kwargs, fragment):
    target = SyncTarget(**{"bucket": "b", "prefix": "models", **kwargs})
    with pytest.raises(UserError) as err:
        _check_target(target)
    assert err.value.exit_code == EXIT_BAD_ARGUMENT
    assert fragment in str(err.value)


def test_prefix_normalisation():
    assert SyncTarget(bucket="b", prefix="/models/").base == "models/"
    assert SyncTarget(bucket="b", prefix="").base == ""
    assert SyncTarget(bucket="b", prefix="a/b").url == "s3://b/a/b/"


def test_hash_cache_is_used_and_an_in_place_rewrite_with_the_old_mtime_misses_it(small_repo, tmp_path, monkeypatch):
    import json
    import os
    import time

    from hybridserve.sync import scan

    monkeypatch.setattr(scan, "RACY_SECONDS", -1.0)  # the fixture's files are brand new; cache them anyway
    cache = tmp_path / "cache" / "hashes.json"
    target = small_repo / "m" / "labels.txt"
    key = os.path.abspath(target)

    scan_repository(small_repo, hash_cache=cache)
    entries = json.loads(cache.read_text())["files"]
    assert entries[key][5] == hashlib.sha256(b"a\nb\n").hexdigest()

    # A cache hit is believed without reading the file: a planted digest comes back.
    entries[key][5] = "0" * 64
    cache.write_text(json.dumps({"format": 1, "files": entries}))
    (model,) = scan_repository(small_repo, hash_cache=cache)
    assert next(f for f in model.files if f.rel == "m/labels.txt").sha256 == "0" * 64

    # Same size, same mtime, same inode, new bytes: only the ctime tells, and it does.
    st = os.stat(target)
    time.sleep(0.05)  # a new tick of the kernel's coarse file clock, so the ctime can differ
    target.write_bytes(b"c\nd\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(target).st_ino == st.st_ino and os.stat(target).st_mtime_ns == st.st_mtime_ns
    (model,) = scan_repository(small_repo, hash_cache=cache)
    assert next(f for f in model.files if f.rel == "m/labels.txt").sha256 == hashlib.sha256(b"c\nd\n").hexdigest()


def test_recently_changed_files_are_not_cached(small_repo, tmp_path):
    cache = tmp_path / "hashes.json"
    scan_repository(small_repo, hash_cache=cache)  # every file was written just now
    assert not cache.exists()


def test_the_model_config_module_is_tritonclients_own_class_without_importing_its_client():
    """scan loads ModelConfig without tritonclient.grpc's __init__ (grpc, numpy: seconds of an unchanged sync);
    configs it parses must still be tritonclient's ModelConfig, whichever module is imported first."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hybridserve.sync.scan import model_config_pb2\n"
        "ours = model_config_pb2()\n"
        "assert 'tritonclient.grpc' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
        "config = ours.ModelConfig(name='m', max_batch_size=8)\n"
        "from tritonclient.grpc import model_config_pb2 as theirs\n"
        "assert theirs.ModelConfig is ours.ModelConfig\n"
        "copy = theirs.ModelConfig(); copy.CopyFrom(config); assert copy.max_batch_size == 8\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def _facts_now(model) -> tuple:
    """What the sync's fast path compares, computed from the config itself (protobuf), not from any cache."""
    selected = select_versions(model.config, model.versions)
    rendered = render_config(model, selected)
    return tuple(selected), hashlib.sha256(rendered).hexdigest(), len(rendered)


def _facts(model) -> tuple:
    return model.facts.selected, model.facts.rendered_sha256, model.facts.rendered_size


def test_config_facts_come_from_the_cache_keyed_by_the_configs_bytes(small_repo, tmp_path):
    """scan.ConfigCache: an unchanged config is not parsed again (no protobuf on an unchanged sync); any byte
    changed in it, or another set of local versions, is parsed and rendered afresh."""
    import json

    cache = tmp_path / "state" / "hashes.json"
    (first,) = scan_repository(small_repo, hash_cache=cache)
    assert first._config is not None and _facts(first) == _facts_now(first) and first.facts.selected == (2, 10)
    configs = cache.with_name("sync-configs.json")
    assert len(json.loads(configs.read_text())["configs"]) == 1

    (again,) = scan_repository(small_repo, hash_cache=cache)
    assert again._config is None  # not parsed: the cache answered
    assert _facts(again) == _facts(first)
    # Believed without rendering: a planted answer comes back (so the next checks prove the key changed).
    data = json.loads(configs.read_text())
    (key,) = data["configs"]
    data["configs"][key][2] = "planted"
    configs.write_text(json.dumps(data))
    assert scan_repository(small_repo, hash_cache=cache)[0].facts.rendered == b"planted"

    config = small_repo / "m" / "config.pbtxt"
    original = config.read_bytes()
    for changed in (original.replace(b"max_batch_size: 8", b"max_batch_size: 9"), original + b" ", original.replace(b"2", b"3")):
        config.write_bytes(changed)
        (model,) = scan_repository(small_repo, hash_cache=cache)
        assert model._config is not None, changed  # parsed: these bytes were never seen
        assert _facts(model) == _facts_now(model) and model.facts.rendered != b"planted"
    config.write_bytes(original)

    _write(small_repo / "m" / "11" / "model.py", "version 11\n")  # the policy (latest 2) now selects 10 and 11
    (model,) = scan_repository(small_repo, hash_cache=cache)
    assert model._config is not None and model.facts.selected == (10, 11) and _facts(model) == _facts_now(model)


def test_a_config_known_to_the_cache_is_parsed_on_first_use_and_a_config_changed_since_the_scan_is_refused(small_repo, tmp_path):
    cache = tmp_path / "hashes.json"
    scan_repository(small_repo, hash_cache=cache)
    (model,) = scan_repository(small_repo, hash_cache=cache)
    assert model._config is None
    assert model.config.max_batch_size == 8 and model.config.version_policy.latest.num_versions == 2

    (model,) = scan_repository(small_repo, hash_cache=cache)
    _write(small_repo / "m" / "config.pbtxt", 'name: "m"\nbackend: "python"\nmax_batch_size: 4\n')
    with pytest.raises(UserError) as err:
        model.config
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY and "config.pbtxt changed while syncing" in str(err.value)


def test_an_invalid_config_is_refused_in_the_scan_whatever_the_cache_holds(small_repo, tmp_path):
    cache = tmp_path / "hashes.json"
    scan_repository(small_repo, hash_cache=cache)
    _write(small_repo / "m" / "config.pbtxt", "max_batch_size: nope\n")
    with pytest.raises(UserError) as err:
        scan_repository(small_repo, hash_cache=cache)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY and "m/config.pbtxt" in str(err.value)


def test_a_config_rewritten_between_hashing_and_parsing_is_refused_and_not_cached(small_repo, tmp_path, monkeypatch):
    """The cache is keyed by the sha256 the scan hashed: facts from other bytes must never be stored under it."""
    import json

    from hybridserve.sync import scan

    cache = tmp_path / "hashes.json"
    config = small_repo / "m" / "config.pbtxt"
    rewritten: list[Path] = []
    real_sha = scan.file_digests

    def sha_then_rewrite(path):  # a writer racing the scan: the config changes right after it was hashed
        digest = real_sha(path)
        if Path(path) == config and not rewritten:
            rewritten.append(path)
            config.write_text('name: "m"\nbackend: "python"\nmax_batch_size: 4\n')
        return digest

    monkeypatch.setattr(scan, "file_digests", sha_then_rewrite)
    with pytest.raises(UserError) as err:
        scan_repository(small_repo, hash_cache=cache)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY and "changed while syncing" in str(err.value)
    configs = cache.with_name("sync-configs.json")
    assert not configs.exists() or json.loads(configs.read_text())["configs"] == {}
