"""A rollback reaches the edge sites (review of issue 15): `hybridserve ci rollback` / `ci deploy` pin each edge
site's publication (its own rendering, so its own version names: serving.publication.edge_pins) along with the
clusters' pin_version; validate refuses one without the other; the program pins the edge publications.

ci commands run against the fake `pulumi` of tests/test_ci.py; the program under the mock engine.
"""

from __future__ import annotations

import json

import pytest
from cliutil import run_cli
from test_ci import BAD, GATE_URN, GOOD, _events, _outputs, _report, fake  # noqa: F401  (fixture)
from test_network import EXAMPLES, variant
from test_sites import edge, problems, stack

from hybridserve.ci import decide
from hybridserve.ci.decide import KnownGood
from hybridserve.stackconfig import build_stack_config
from hybridserve.stackconfig.schema.stack import format_loc

STACK = "search-dev"
# store-berlin has a GPU host: its GPU rendering is a publication of its own (key <site>/gpu).
EDGE_GOOD = {"store-berlin": "v" + "a" * 16, "store-berlin/gpu": "v" + "f" * 16, "store-lyon": "v" + "b" * 16}
EDGE_BAD = {"store-berlin": "v" + "c" * 16, "store-berlin/gpu": "v" + "0" * 16, "store-lyon": "v" + "d" * 16}


def _edge_outputs(version: str = GOOD, edge: dict | None = None, kept: list[str] | None = None) -> dict:
    """search-dev's outputs: the clusters at `version`, each edge site at its `edge` version, both good and bad kept."""
    out = _outputs(version=version, kept=kept if kept is not None else [version, BAD if version == GOOD else GOOD])
    edge = edge or EDGE_GOOD
    def pub(key):
        return {"version": edge[key], "prefix": f"models/edge-{key}", "kept": [edge[key], EDGE_GOOD[key], EDGE_BAD[key]]}
    out["edgeHosts"] = {
        "store-berlin": {"hub": "aws", "publication": pub("store-berlin"), "gpuPublication": pub("store-berlin/gpu"), "hosts": []},
        "store-lyon": {"hub": "openstack", "publication": pub("store-lyon"), "gpuPublication": None, "hosts": []},
    }
    return out


def _config_args(up: list[str]) -> dict[str, str]:
    return dict(up[i + 1].split("=", 1) for i, a in enumerate(up) if a == "--config")


# --- decide ---------------------------------------------------------------------------------------------------


def test_known_good_carries_the_edge_versions_published_with_it():
    good = decide.known_good(_edge_outputs(), "succeeded")
    assert good.version == GOOD and good.edge_versions == EDGE_GOOD
    assert good.as_json()["edge_versions"] == EDGE_GOOD


def test_edge_pins_follow_the_record_the_flag_or_the_current_pair():
    now = _edge_outputs(version=BAD, edge=EDGE_BAD)  # the clusters serve BAD now: which edge version went with GOOD is not said
    pins, problem = decide.edge_pins(GOOD, now)
    assert pins == {} and "which edge version goes with" in problem and "--edge-version SITE=VERSION" in problem
    assert decide.edge_pins(GOOD, now, recorded=EDGE_GOOD) == (EDGE_GOOD, None)
    assert decide.edge_pins(GOOD, now, given=EDGE_GOOD) == (EDGE_GOOD, None)
    assert decide.edge_pins(BAD, now) == (EDGE_BAD, None)  # the clusters serve it now: the edge sites' current versions
    _, problem = decide.edge_pins(GOOD, now, given={**EDGE_GOOD, "store-berlin": "v" + "e" * 16})
    assert "edge site store-berlin: v" + "e" * 16 + " is not kept" in problem
    _, problem = decide.edge_pins(GOOD, now, given={**EDGE_GOOD, "store-paris": GOOD})
    assert "--edge-version store-paris: not an edge site" in problem
    assert decide.edge_pins(GOOD, _outputs()) == ({}, None)  # no edge sites: nothing to pin


# --- the ci commands (fake pulumi) -----------------------------------------------------------------------------


def test_rollback_pins_the_edge_sites_with_the_clusters(fake, capsys, tmp_path):  # noqa: F811
    record = tmp_path / "known-good.json"
    record.write_text(json.dumps(KnownGood({"aws": GOOD, "openstack": GOOD}, {}, EDGE_GOOD).as_json()))
    fake.set("outputs.json", _edge_outputs(version=BAD, edge=EDGE_BAD))
    code, out, err = run_cli(["ci", "rollback", "--stack", STACK, "--record", str(record)], capsys)
    assert code == 0, err
    (up,) = fake.pulumi_calls("up")
    assert _config_args(up) == {
        "hybridserve:serving.publication.pin_version": GOOD,
        'hybridserve:serving.publication.edge_pins["store-berlin"]': EDGE_GOOD["store-berlin"],
        'hybridserve:serving.publication.edge_pins["store-lyon"]': EDGE_GOOD["store-lyon"],
        'hybridserve:serving.publication.edge_pins["store-berlin/gpu"]': EDGE_GOOD["store-berlin/gpu"],
    }
    assert "--config-path" in up and f"edge site store-lyon {EDGE_GOOD['store-lyon']}" in out


def test_rollback_to_an_older_version_without_its_edge_versions_is_refused_naming_the_flag(fake, capsys):  # noqa: F811
    fake.set("outputs.json", _edge_outputs(version=BAD, edge=EDGE_BAD))
    code, out, err = run_cli(["ci", "rollback", "--stack", STACK, "--version", GOOD], capsys)
    assert code == 2, out + err
    assert f"cannot roll back the edge sites with {GOOD}" in err and "--edge-version SITE=VERSION" in err
    assert fake.pulumi_calls("up") == []
    given = [a for site, v in EDGE_GOOD.items() for a in ("--edge-version", f"{site}={v}")]
    code, _, err = run_cli(["ci", "rollback", "--stack", STACK, "--version", GOOD, *given], capsys)
    assert code == 0, err
    assert _config_args(fake.pulumi_calls("up")[0])['hybridserve:serving.publication.edge_pins["store-berlin"]'] == EDGE_GOOD["store-berlin"]
    code, _, err = run_cli(["ci", "rollback", "--stack", STACK, "--version", GOOD, "--edge-version", "store-berlin"], capsys)
    assert code == 2 and "--edge-version 'store-berlin': expected SITE=VERSION" in err


def test_a_failed_gate_rolls_back_the_edge_sites_too(fake, capsys, tmp_path):  # noqa: F811
    fake.set("outputs.json", _edge_outputs())
    fake.set("up.code", "255")
    fake.set("events.jsonl", "\n".join(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed: BackoffLimitExceeded"), job="triton-smoke-new")))
    fake.gate_log("triton-smoke-new", _report(False))
    fake.gate_log("triton-smoke-openstack", _report(True))
    reports = tmp_path / "out"
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(reports)], capsys)
    assert code == 1 and f"rolled back to {GOOD}" in err, err
    _, rollback = fake.pulumi_calls("up")
    assert _config_args(rollback)['hybridserve:serving.publication.edge_pins["store-lyon"]'] == EDGE_GOOD["store-lyon"]
    assert json.loads((reports / f"{STACK}.known-good.json").read_text())["edge_versions"] == EDGE_GOOD


# --- the config and the program --------------------------------------------------------------------------------


def _pinned(**publication) -> dict:
    values = stack(edge())
    values["hybridserve:serving"] = {"publication": publication}
    return values


@pytest.mark.parametrize(("publication", "key", "words"), [
    ({"pin_version": GOOD}, ("serving", "publication", "edge_pins"), "has no pin for plant-a, plant-a/gpu, but pin_version"),
    ({"pin_version": GOOD, "edge_pins": {"plant-a": GOOD}}, ("serving", "publication", "edge_pins"), "has no pin for plant-a/gpu, but"),
    ({"edge_pins": {"plant-a": GOOD}}, ("serving", "publication", "edge_pins"), "is set without serving.publication.pin_version"),
    ({"pin_version": GOOD, "edge_pins": {"plant-a": GOOD, "plant-a/gpu": GOOD, "plant-z": GOOD}}, ("serving", "publication", "edge_pins", "plant-z"), "not an edge publication of this stack"),
    ({"pin_version": GOOD, "edge_pins": {"plant-a": "latest"}}, ("serving", "publication", "edge_pins", "plant-a"), "it must match"),
], ids=["pin-without-edge", "pin-without-gpu-edge", "edge-without-pin", "unknown-site", "not-a-version"])
def test_the_clusters_and_the_edge_sites_are_pinned_together(publication, key, words):
    found = problems(_pinned(**publication))
    assert any(p.startswith(f"config: {format_loc(key)}: ") and words in p for p in found), found
    build_stack_config(_pinned(pin_version=GOOD, edge_pins={"plant-a": BAD, "plant-a/gpu": GOOD}))  # plant-a's host has a GPU


def test_the_program_pins_each_edge_publication(tmp_path):
    from infra.plan import plan_stack_file

    def edit(c):
        c["hybridserve:serving"]["publication"] = {"pin_version": GOOD, "edge_pins": EDGE_GOOD}
    plan = plan_stack_file(variant(tmp_path, "search-dev", edit))
    pubs = {r.name: r.inputs for r in plan.resources if r.type.endswith(":ModelPublication")}
    assert {n: (p["version"], p.get("pinned")) for n, p in pubs.items()} == {
        "models-aws": (GOOD, True), "models-openstack": (GOOD, True),
        "models-edge-store-berlin": (EDGE_GOOD["store-berlin"], True), "models-edge-store-berlin-gpu": (EDGE_GOOD["store-berlin/gpu"], True),
        "models-edge-store-lyon": (EDGE_GOOD["store-lyon"], True)}
    assert plan.outputs["edgeHosts"]["store-berlin"]["publication"]["pinned"] == EDGE_GOOD["store-berlin"]
    assert EXAMPLES.joinpath("Pulumi.search-dev.yaml").is_file()
