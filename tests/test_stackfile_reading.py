"""Stack files read as Pulumi reads them: duplicates, scalars, keys outside `config:`, file names.

Pulumi parses Pulumi.yaml and Pulumi.<stack>.yaml with gopkg.in/yaml.v3, not YAML 1.1 as PyYAML does. Each case
here was a stack file that `validate` read differently from Pulumi (a duplicated max_size turned 2 into 200,
`environment: no` became a boolean, a key outside config: gave "team is required", a .yml stack was skipped).
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from hybridserve.stackconfig import StackConfigError, build_stack_config, load_stack_file, read_stack_config, stack_files
from hybridserve.stackconfig.pulumiyaml import Timestamp, go_json_float, parse, resolve_plain
from stackutil import reachable

from cliutil import run_cli

VISION_DEV = "Pulumi.vision-dev.yaml"


@pytest.fixture
def checkout(example_checkout: Path) -> Path:
    return example_checkout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {path}"
    path.write_text(text.replace(old, new))


def line_of(path: Path, text: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return hits[nth - 1]


def stack_file(tmp_path: Path, body: str, name: str = "acme-dev") -> Path:
    (tmp_path / "stacks").mkdir(exist_ok=True)
    path = tmp_path / "stacks" / f"Pulumi.{name}.yaml"
    path.write_text(body)
    return path


def problems_reading(path: Path) -> list[str]:
    with pytest.raises(StackConfigError) as info:
        read_stack_config(path)
    assert info.value.exit_code == 2
    return info.value.problems


def refused(checkout: Path, capsys, *expected: str, stack: str = "vision-dev") -> str:
    """validate (all, and --stack) and plan --stack fail with exit 2 naming `expected`, no traceback, nothing planned."""
    err = ""
    for args in (["validate"], ["validate", "--stack", stack], ["plan", "--stack", stack, "--json", "plan.json"]):
        code, out, err = run_cli(args, capsys)
        assert code == 2, (args, out, err)
        for text in expected:
            assert text in err, (args, text, err)
    assert not (checkout / "plan.json").exists()
    return err


# --- 1. duplicate keys -----------------------------------------------------------------------------


def test_a_duplicated_nested_key_names_both_lines_and_the_key_path(checkout: Path, capsys):
    """The reported case: max_size 2 then 200 in the system pool was read as 200."""
    path = checkout / "stacks" / VISION_DEV
    edit(path, "        max_size: 2\n      gpu_pools:", "        max_size: 2\n        max_size: 200\n      gpu_pools:")
    first, second = line_of(path, "max_size: 2", 1), line_of(path, "max_size: 200")
    err = refused(
        checkout, capsys,
        f"stacks/{VISION_DEV}:{second}: hybridserve:aws.eks.system_pool.max_size: is set twice, on line {first} and on line {second}",
    )
    assert "Pulumi refuses duplicate keys" in err


def test_a_duplicated_block_is_refused(checkout: Path, capsys):
    path = checkout / "stacks" / VISION_DEV
    block = "  hybridserve:vpn:\n    tunnel_inside_cidrs: [169.254.20.0/30, 169.254.20.4/30]\n"
    edit(path, block, block + block.replace("169.254.20.", "169.254.30."))
    first, second = line_of(path, "hybridserve:vpn:", 1), line_of(path, "hybridserve:vpn:", 2)
    refused(checkout, capsys, f"stacks/{VISION_DEV}:{second}: hybridserve:vpn: is set twice, on line {first} and on line {second}")


def test_a_duplicate_inside_a_list_item_names_its_index(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve:aws:\n    eks:\n      gpu_pools:\n        - name: t4\n          max_size: 2\n          max_size: 200\n")
    assert problems_reading(path) == [
        f"{path}:7: hybridserve:aws.eks.gpu_pools[0].max_size: is set twice, on line 6 and on line 7; "
        "Pulumi refuses duplicate keys (mapping key already defined): keep one"
    ]


def test_quoted_and_plain_spellings_of_a_key_are_one_key(tmp_path: Path):
    """yaml.v3 compares keys as written without quotes, so "max_size" and max_size collide."""
    path = stack_file(tmp_path, 'config:\n  hybridserve:team: acme\n  "hybridserve:team": other\n')
    assert problems_reading(path)[0].startswith(f"{path}:3: hybridserve:team: is set twice, on line 2 and on line 3")


def test_a_key_with_and_without_the_project_namespace_is_one_key(tmp_path: Path):
    """Pulumi adds the project's name to `team`; which of the two it kept would depend on Go's map order."""
    path = stack_file(tmp_path, "config:\n  hybridserve:team: acme\n  team: other\n")
    (problem,) = problems_reading(path)
    assert problem.startswith(f"{path}:3: team: sets hybridserve:team again (line 2 wrote it as `hybridserve:team`)")


def test_keys_merged_from_an_anchor_are_not_duplicates(tmp_path: Path):
    """`<<: *base` then an own key: the own key wins, as in yaml.v3; only keys written twice are duplicates."""
    path = stack_file(tmp_path, "config:\n  hybridserve:tags: &base {owner: a, tier: x}\n  hybridserve:serving:\n    labels:\n      <<: *base\n      owner: b\n")
    assert read_stack_config(path)["hybridserve:serving"] == {"labels": {"owner": "b", "tier": "x"}}


def test_a_duplicate_in_the_project_file_is_refused(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text("name: hybridserve\nruntime: python\nconfig:\n  cost_center:\n    default: CC-1\n  cost_center:\n    default: CC-2\n")
    path = stack_file(tmp_path, "config:\n  hybridserve:team: acme\n")
    (problem,) = problems_reading(path)
    assert problem.startswith(f"{tmp_path / 'Pulumi.yaml'}:6: config.cost_center: is set twice, on line 4 and on line 6")


# --- 2. scalars as yaml.v3 resolves them -----------------------------------------------------------

# Recorded from gopkg.in/yaml.v3 v3.0.1 (the version pulumi/pulumi's sdk/go.mod pins; 2026-12-01): `k: <text>`
# unmarshalled into map[string]any, then json.Marshal as Pulumi stores it. Timestamps show time.Time.String().
YAML_V3 = [
    ("no", "no"), ("yes", "yes"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"), ("NO", "NO"), ("tRue", "tRue"),
    ("true", True), ("True", True), ("TRUE", True), ("false", False),
    ("010", 8), ("0777", 511), ("08", 8.0), ("00", 0), ("0", 0), ("0x1F", 31), ("0X1f", 31), ("-0x10", -16), ("+0x10", 16),
    ("0o17", 15), ("0b101", 5), ("-0b101", -5), ("1_000", 1000), ("1__0", 10), ("+5", 5), ("-5", -5),
    ("1e3", 1000.0), ("1E3", 1000.0), ("1.5e3", 1500.0), ("1.0", 1.0), ("1.", 1.0), (".5", 0.5), ("+.5", 0.5), ("-.5", -0.5),
    (".5e3", 500.0), ("0e5", 0.0), ("010.5", 10.5), ("1_000.5", 1000.5), ("1e+21", 1e21), ("1e-7", 1e-7),
    ("~", None), ("null", None), ("Null", None), ("", None),
    ("1:30", "1:30"), ("2026-13-01", "2026-13-01"), ("2026-02-30", "2026-02-30"), ("inf", "inf"), ("nan", "nan"),
    ("0x", "0x"), ("0o", "0o"), ("0b", "0b"), ("+", "+"), (".", "."), ("1.5.5", "1.5.5"),
    ("9223372036854775807", 9223372036854775807), ("9223372036854775808", 9223372036854775808),
    ("18446744073709551615", 18446744073709551615), ("18446744073709551616", 18446744073709551616.0),
    ("2026-12-01", Timestamp("2026-12-01", "2026-12-01 00:00:00 +0000 UTC")),
    ("2026-1-2", Timestamp("2026-1-2", "2026-01-02 00:00:00 +0000 UTC")),
    ("2026-12-01T10:00:00Z", Timestamp("2026-12-01T10:00:00Z", "2026-12-01 10:00:00 +0000 UTC")),
    ("2026-12-01t10:00:00Z", Timestamp("2026-12-01t10:00:00Z", "2026-12-01 10:00:00 +0000 UTC")),
    ("2026-12-01T10:00:00.500Z", Timestamp("2026-12-01T10:00:00.500Z", "2026-12-01 10:00:00.5 +0000 UTC")),
    ("2026-12-01 10:00:00.50", Timestamp("2026-12-01 10:00:00.50", "2026-12-01 10:00:00.5 +0000 UTC")),
    ("2026-12-01T10:00:00+02:00", Timestamp("2026-12-01T10:00:00+02:00", "2026-12-01 10:00:00 +0200 +0200")),
]


@pytest.mark.parametrize(("text", "expected"), YAML_V3, ids=[repr(t) for t, _ in YAML_V3])
def test_plain_scalars_resolve_as_yaml_v3_does(text, expected):
    got = resolve_plain(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text", [".inf", "-.inf", "+.INF", ".nan", ".NaN"])
def test_infinities_resolve_as_yaml_v3_does(text):
    assert not math.isfinite(resolve_plain(text))


@pytest.mark.parametrize(("value", "text"), [(1000.0, "1000"), (1e21, "1e+21"), (1e-7, "1e-7"), (1.5e-6, "0.0000015"), (0.1, "0.1"), (123456789.0, "123456789"), (2.5, "2.5")])
def test_floats_are_written_as_go_json_writes_them(value, text):
    """Pulumi stores a non-text scalar as JSON: the program gets "1000" for 1e3, not "1000.0"."""
    assert go_json_float(value) == text


@pytest.mark.parametrize(
    ("written", "program_gets"),
    [("no", "no"), ("off", "off"), ("yes", "yes"), ("true", "true"), ("4100", "4100"), ("1e3", "1000"), ("12.50", "12.5"),
     ("0x10", "16"), ("1_000", "1000"), ("1:30", "1:30"), ("'010'", "010"), ('"2026-12-01"', "2026-12-01"), ("'no'", "no")],
)
def test_a_top_level_scalar_is_the_text_pulumi_passes_to_the_program(tmp_path: Path, written, program_gets):
    """pulumi.Config.get returns text; the loader hands build_stack_config the same text (infra/config.py reads it so)."""
    path = stack_file(tmp_path, f"config:\n  hybridserve:cost_center: {written}\n")
    assert read_stack_config(path)["hybridserve:cost_center"] == program_gets


def test_structured_values_are_what_get_object_returns(tmp_path: Path):
    """Inside objects too: no/on stay text, a float with no fraction arrives as an integer (JSON), ~ is null."""
    path = stack_file(tmp_path, "config:\n  hybridserve:tags:\n    on: yes\n    env: no\n  hybridserve:serving:\n    replicas: {min: 1e0, max: 0x4}\n    slo: {max_p99_ms: 2.5e2, max_error_rate: 0.5, x: ~, y: 1:30}\n")
    config = read_stack_config(path)
    assert config["hybridserve:tags"] == {"on": "yes", "env": "no"}
    serving = config["hybridserve:serving"]
    assert serving["replicas"] == {"min": 1, "max": 4} and type(serving["replicas"]["min"]) is int
    assert serving["slo"] == {"max_p99_ms": 250, "max_error_rate": 0.5, "x": None, "y": "1:30"}


def test_environment_no_is_text_not_a_boolean(checkout: Path, capsys):
    """PyYAML read `no` as False (then "false"); Pulumi passes "no", so the stack is named vision-no."""
    edit(checkout / "stacks" / VISION_DEV, "hybridserve:environment: dev", "hybridserve:environment: no")
    err = refused(checkout, capsys, "environment 'no' make stack 'vision-no', but this is stack 'vision-dev'")
    assert "'false'" not in err


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("010", "010 is read by Pulumi as an octal number, 8; write 8, or quote it ('010')"),
        ("08", "08 is read by Pulumi as a number, 8; write 8, or quote it ('08')"),
        ("2026-12-01", "2026-12-01 is read by Pulumi as a timestamp and passed on as the text '2026-12-01 00:00:00 +0000 UTC'; quote it ('2026-12-01')"),
        (".inf", ".inf cannot be stored by Pulumi (config values are JSON, which has no infinity)"),
        (".nan", ".nan cannot be stored by Pulumi (config values are JSON, which has no NaN)"),
        ("", "has no value; Pulumi would read it as empty text"),
        ("~", "has no value; Pulumi would read it as empty text"),
    ],
)
def test_a_scalar_pulumi_would_refuse_or_read_otherwise_is_named(tmp_path: Path, written, message):
    path = stack_file(tmp_path, f"config:\n  hybridserve:team: acme\n  hybridserve:cost_center: {written}\n")
    (problem,) = problems_reading(path)
    assert problem.startswith(f"{path}:3: hybridserve:cost_center: ") and message in problem, problem


def test_a_nested_scalar_is_named_with_its_key_path_and_line(checkout: Path, capsys):
    path = checkout / "stacks" / VISION_DEV
    edit(path, "      max_p99_ms: 600", "      max_p99_ms: .inf")
    line = line_of(path, "max_p99_ms: .inf")
    refused(checkout, capsys, f"stacks/{VISION_DEV}:{line}: hybridserve:serving.slo.max_p99_ms: .inf cannot be stored by Pulumi")


def test_a_key_that_is_not_text_is_refused(tmp_path: Path):
    """yaml.v3 reads `1:` as a number key; Pulumi then stops with "expected only string keys"."""
    path = stack_file(tmp_path, "config:\n  hybridserve:tags:\n    1: x\n    true: y\n")
    problems = problems_reading(path)
    assert any(p.startswith(f"{path}:3: hybridserve:tags.1: the key '1' is read as a number, not text") for p in problems), problems
    assert any(p.startswith(f"{path}:4: hybridserve:tags.true: the key 'true' is read as a boolean") for p in problems), problems


def test_a_second_document_is_refused(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve:team: acme\n---\nconfig:\n  hybridserve:team: other\n")
    assert problems_reading(path) == [f"{path}:3: (document): starts a second YAML document (---); Pulumi reads only the first: keep one document"]


def test_the_loader_and_the_program_read_the_same_values(tmp_path: Path):
    """What `validate` builds from the file equals what the program builds from the text Pulumi passes it."""
    from infra.plan import runtime_config_of

    body = (
        "config:\n  hybridserve:team: acme\n  hybridserve:environment: dev\n  hybridserve:cost_center: 1e3\n"
        "  hybridserve:tags: {on: yes}\n  hybridserve:serving: {replicas: {min: 1e0, max: 0x2}}\n"
    )
    path = stack_file(tmp_path, body)
    path.write_text(path.read_text().replace("config:\n", "config:\n" + "".join(
        f"  {k}: {json.dumps(v)}\n" for k, v in reachable({k: {} for k in ("hybridserve:aws", "hybridserve:openstack")}).items()), 1))
    offline = load_stack_file(path)
    as_passed, secret_keys, _ = runtime_config_of(path)  # every value text, structured ones JSON, as the CLI hands them over
    assert all(isinstance(v, str) for v in as_passed.values())

    def program_reads():
        import pulumi
        from pulumi.runtime import config as runtime_config

        from infra.config import read_config

        from infra.mocks import PlanMocks

        import asyncio

        # set_mocks needs an event loop in this thread; a plan run earlier in the process leaves none.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            pulumi.runtime.set_mocks(PlanMocks("us-east-1", "acme-dev"), project="hybridserve", stack="acme-dev")
            runtime_config.set_all_config(as_passed, secret_keys)
            return read_config()  # pulumi.Config.get / get_object, as under `pulumi up`
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    assert contextvars.copy_context().run(program_reads) == offline
    assert (offline.cost_center, offline.tags, offline.serving.replicas.max) == ("1000", {"on": "yes"}, 2)


# --- 3. keys outside config:, blocks, namespaces ---------------------------------------------------


def test_a_key_at_the_top_level_is_named_not_reported_missing(checkout: Path, capsys):
    path = checkout / "stacks" / VISION_DEV
    edit(path, "  hybridserve:team: vision\n", "")
    path.write_text(path.read_text() + "hybridserve:team: vision\n")
    line = line_of(path, "hybridserve:team: vision")
    err = refused(
        checkout, capsys,
        f"stacks/{VISION_DEV}:{line}: hybridserve:team: is at the top level of stacks/{VISION_DEV}; "
        "Pulumi reads stack settings only under `config:`",
    )
    assert "is required" not in err


def test_a_block_dedented_out_of_config_is_named(checkout: Path, capsys):
    path = checkout / "stacks" / VISION_DEV
    text = path.read_text()
    start = text.index("  hybridserve:serving:\n")
    path.write_text(text[:start] + "\n".join(line[2:] for line in text[start:].splitlines()) + "\n")
    refused(checkout, capsys, f"stacks/{VISION_DEV}:{line_of(path, 'hybridserve:serving:')}: hybridserve:serving: is at the top level")


def test_a_namespace_block_at_the_top_level_is_named(tmp_path: Path):
    path = stack_file(tmp_path, "hybridserve:\n  team: acme\n")
    assert problems_reading(path)[0].startswith(
        f"{path}:1: hybridserve: is a block at the top level of {path}; Pulumi reads stack settings only under `config:`, as flat keys hybridserve:<key>"
    )


def test_a_namespace_block_inside_config_is_named(tmp_path: Path):
    """`hybridserve:` with keys under it would be one key, hybridserve:hybridserve, to Pulumi."""
    path = stack_file(tmp_path, "config:\n  hybridserve:\n    team: acme\n")
    assert problems_reading(path) == [
        f"{path}:2: hybridserve: is a block of keys; Pulumi config keys are flat: write hybridserve:<key> directly under config:, e.g. hybridserve:team: ..."
    ]


def test_keys_level_with_an_empty_section_are_told_to_indent(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve:aws:\n  vpc:\n    cidr: 10.0.0.0/16\n  eks: {}\n")
    problems = problems_reading(path)
    assert f"{path}:2: hybridserve:aws: has no value; Pulumi would read it as empty text (and warn); give it a value or delete the line" in problems
    assert any(p.startswith(f"{path}:3: vpc: is level with hybridserve:aws (line 2), which has no value, so Pulumi reads it as a key of its own, hybridserve:vpc; indent it under hybridserve:aws") for p in problems), problems
    assert any(p.startswith(f"{path}:5: eks: is level with hybridserve:aws") for p in problems), problems


def test_a_section_key_dedented_into_config_names_its_section(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve:aws:\n    vpc: {cidr: 10.0.0.0/16}\n  gpu_pools: []\n")
    (problem,) = problems_reading(path)
    assert problem == (
        f"{path}:4: gpu_pools: has no namespace, so Pulumi reads it as hybridserve:gpu_pools, which is not a known key; "
        "gpu_pools is a key of hybridserve:aws.eks, hybridserve:openstack.magnum: indent it there"
    )


def test_a_mistyped_namespace_is_named(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserv:team: acme\n  project:cost_center: CC-1\n  aws:region: eu-west-1\n  acme:anything: x\n")
    assert problems_reading(path) == [
        f"{path}:2: hybridserv:team: namespace 'hybridserv' is no package of this program, so nothing would read it; did you mean hybridserve:team?",
        f"{path}:3: project:cost_center: namespace 'project' is no package of this program, so nothing would read it; did you mean hybridserve:cost_center?",
    ]


def test_keys_without_namespace_take_the_projects_as_in_pulumi(tmp_path: Path):
    """Pulumi reads `team:` in a stack file as hybridserve:team, and the old hybridserve:config:team spelling too."""
    path = stack_file(tmp_path, "config:\n  team: acme\n  hybridserve:config:environment: dev\n  aws:region: eu-west-1\n")
    assert read_stack_config(path) == {"hybridserve:team": "acme", "hybridserve:environment": "dev", "aws:region": "eu-west-1"}


def test_a_key_pulumi_cannot_parse_is_named(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve:aws:vpc: {}\n")
    assert problems_reading(path) == [
        f"{path}:2: hybridserve:aws:vpc: is not a config key Pulumi can parse; config keys are <namespace>:<name>, e.g. hybridserve:team or aws:region"
    ]


def test_top_level_environment_is_not_the_stacks_environment(tmp_path: Path):
    path = stack_file(tmp_path, "environment: dev\nconfig:\n  hybridserve:team: acme\n")
    assert problems_reading(path)[0].startswith(f"{path}:1: environment: the top-level `environment` lists Pulumi ESC environments")
    assert "put `hybridserve:environment: dev` under config:" in problems_reading(path)[0]


def test_a_misspelt_config_block_is_named(checkout: Path, capsys):
    path = checkout / "stacks" / VISION_DEV
    edit(path, "\nconfig:\n", "\nconifg:\n")
    err = refused(checkout, capsys, f"stacks/{VISION_DEV}:{line_of(path, 'conifg:')}: conifg: is not a stack file key", "did you mean `config:`?")
    assert "is required" not in err


def test_a_dotted_key_set_without_path_names_its_section():
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "C", "hybridserve:vpc": {}}))
    problems = info.value.problems
    assert "config: hybridserve:vpc: is not a known key; vpc is a key of hybridserve:aws: nest it there" in problems


def test_project_file_shorthand_values_apply_as_pulumi_applies_them(tmp_path: Path):
    """`cost_center: CC-9` in Pulumi.yaml is a default for the project's key (RewriteShorthandConfigValues)."""
    (tmp_path / "Pulumi.yaml").write_text("name: hybridserve\nruntime: python\nconfig:\n  cost_center: CC-9\n  aws:region: eu-west-1\n  hybridserve:environment:\n    value: dev\n")
    path = stack_file(tmp_path, "config:\n  hybridserve:team: acme\n")
    assert read_stack_config(path) == {"hybridserve:cost_center": "CC-9", "aws:region": "eu-west-1", "hybridserve:environment": "dev", "hybridserve:team": "acme"}


def test_project_file_declarations_pulumi_refuses_are_named(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text("name: hybridserve\nruntime: python\nconfig:\n  aws:region:\n    default: eu-west-1\n  team:\n    default: a\n    value: b\n")
    path = stack_file(tmp_path, "config:\n  hybridserve:team: acme\n")
    project = tmp_path / "Pulumi.yaml"
    assert problems_reading(path) == [
        f"{project}:4: config.aws:region: is not in the project's namespace, so Pulumi accepts only `value:` for it (no `type:` or `default:`)",
        f"{project}:6: config.team: has both `default:` and `value:`; Pulumi refuses that: keep one",
    ]


# --- 4. stack file names --------------------------------------------------------------------------


def test_a_yml_stack_is_named_with_the_rename(checkout: Path, capsys):
    stacks = checkout / "stacks"
    (stacks / VISION_DEV).rename(stacks / "Pulumi.vision-dev.yml")
    expected = (
        "stacks/Pulumi.vision-dev.yml: is not read by Pulumi, which reads stack 'vision-dev' only from Pulumi.vision-dev.yaml "
        "(the extension of Pulumi.yaml, this exact case); rename it: git mv stacks/Pulumi.vision-dev.yml stacks/Pulumi.vision-dev.yaml"
    )
    for args in (["validate"], ["validate", "--stack", "vision-dev"], ["plan", "--all"], ["plan", "--stack", "vision-dev"], ["plan", "--stack", "search-dev"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and expected in err, (args, err)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda s: (s / VISION_DEV).rename(s / "pulumi.vision-dev.yaml"),
         "stacks/pulumi.vision-dev.yaml: is not read by Pulumi, which reads stack 'vision-dev' only from Pulumi.vision-dev.yaml"),
        (lambda s: (s / VISION_DEV).rename(s / "Pulumi.vision-dev.YAML"),
         "stacks/Pulumi.vision-dev.YAML: is not read by Pulumi, which reads stack 'vision-dev' only from Pulumi.vision-dev.yaml"),
        (lambda s: (s / VISION_DEV).rename(s / "Pulumi.vision-dev.json"),
         "stacks/Pulumi.vision-dev.json: is not read by Pulumi, which reads stack 'vision-dev' only from Pulumi.vision-dev.yaml"),
        (lambda s: (s / VISION_DEV).rename(s / "vision-dev.yaml"),
         "stacks/vision-dev.yaml: is not read by Pulumi, which reads stack 'vision-dev' only from Pulumi.vision-dev.yaml"),
        (lambda s: (s / "Pulumi.vision-test.yaml").mkdir(),
         "stacks/Pulumi.vision-test.yaml: is a directory, not a file; Pulumi reads stack 'vision-test' from a file of this name"),
        (lambda s: os.symlink(s / "gone.yaml", s / "Pulumi.vision-test.yaml"),
         "stacks/Pulumi.vision-test.yaml: is a broken symbolic link"),
        (lambda s: shutil.copy(s.parent / "Pulumi.yaml", s / "Pulumi.yaml"),
         "stacks/Pulumi.yaml: is a project file in the stacks directory"),
        (lambda s: (s / "Pulumi..yaml").write_text("config: {}\n"),
         "stacks/Pulumi..yaml: names no stack; stack files are named Pulumi.<team>-<env>.yaml"),
    ],
    ids=["lowercase-prefix", "uppercase-suffix", "json", "no-prefix", "directory", "broken-link", "project-file", "no-name"],
)
def test_a_file_pulumi_would_not_read_as_a_stack_is_named(checkout: Path, capsys, make, expected):
    make(checkout / "stacks")
    for args in (["validate"], ["validate", "--stack", "search-dev"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and expected in err, (args, err)


def test_other_files_in_the_stacks_directory_are_left_alone(checkout: Path):
    stacks = checkout / "stacks"
    (stacks / "README.md").write_text("stacks\n")
    (stacks / ".Pulumi.vision-dev.yaml.swp").write_text("x")
    (stacks / "Pulumi.vision-dev.yaml~").write_text("x")
    assert sorted(stack_files(stacks)) == ["search-dev", "search-prod", "vision-dev", "vision-prod"]


def test_the_example_stacks_read_unchanged(checkout: Path):
    """The examples hold nothing yaml.v3 reads otherwise: every one still loads."""
    examples = stack_files(checkout / "stacks")
    assert len(examples) == 4
    for name, path in examples.items():
        assert load_stack_file(path).stack_name == name
    assert parse("a: [1, 'x']\n").value == {"a": [1, "x"]}


def test_a_space_after_the_namespace_colon_gets_a_hint(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  hybridserve: team: acme\n")
    (problem,) = problems_reading(path)
    assert problem.startswith(f"{path}: is not valid YAML (line 2, column 20): mapping values are not allowed here")
    assert "a config key has no space after its namespace: hybridserve:team, not hybridserve: team" in problem


def test_a_region_without_namespace_points_to_aws_region(tmp_path: Path):
    path = stack_file(tmp_path, "config:\n  region: eu-west-1\n")
    (problem,) = problems_reading(path)
    assert "Pulumi reads it as hybridserve:region, which is not a known key; region is a key of aws:region" in problem


@pytest.mark.parametrize("given", ["Pulumi.vision-dev.yml", "stacks/pulumi.vision-dev.yaml", "Pulumi.Vision-Dev.yaml"])
def test_a_stack_file_name_given_as_the_stack_names_the_stack(checkout: Path, capsys, given):
    code, _, err = run_cli(["validate", "--stack", given], capsys)
    assert code == 2 and f"stack {given!r} not found in stacks" in err and "did you mean --stack vision-dev?" in err, err
