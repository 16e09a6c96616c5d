"""`hybridserve models tune`: the search, the results file, the config.pbtxt edit and bad input (no server).

The measurement is faked here only to test the search logic; tests/test_tune_server.py measures for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hybridserve.errors import UserError
from hybridserve.paths import model_repo_dir
from hybridserve.tune.measure import baseline_of, candidate_config, keep_sweeping, sweep_levels
from hybridserve.tune.pbtxt import THREADS_PARAMETER, tuned_text, write_atomically
from hybridserve.tune.results import ResultsFile
from hybridserve.tune.search import (
    Candidate,
    Level,
    Objective,
    Result,
    build_space,
    coordinate_descent,
)
from tests.cliutil import run_cli

BASE = Candidate(instances=1, threads=2, max_queue_delay_us=2000, preferred_batch_sizes=(16, 32))


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_measure(throughput, clock: FakeClock | None = None, cost: float = 10.0, p99=lambda c: 5.0):
    """A measure function: one level whose throughput and p99 are functions of the candidate."""
    calls = []

    def measure(c: Candidate) -> Result:
        calls.append(c)
        if clock is not None:
            clock.t += cost
        return Result(c, [Level(8, throughput(c), p99(c))])

    return measure, calls


def score(c: Candidate) -> float:
    # Best at 2 instances x 1 thread, no queue delay, preferred [8]; each dimension adds on its own.
    return (100 * (c.instances == 2 and c.threads == 1) + 10 * (c.preferred_batch_sizes == (8,))
            + 1 * (c.max_queue_delay_us == 0) + 1)


# --------------------------------------------------------------------------------------------- space


def test_space_is_pruned_by_the_cores_and_keeps_the_baseline():
    space = build_space(BASE, cpus=2, max_batch_size=64)
    assert set(space.placement) == {(1, 1), (1, 2), (2, 1)}  # instances x threads <= 2 cores
    assert all(i * t <= 2 for i, t in space.placement)
    assert BASE.preferred_batch_sizes in space.preferred_batch_sizes and () in space.preferred_batch_sizes
    assert all(max(p, default=0) <= 64 for p in space.preferred_batch_sizes)
    assert 2000 in space.max_queue_delay_us and 0 in space.max_queue_delay_us
    big = build_space(BASE, cpus=8, max_batch_size=16)
    assert max(i for i, _ in big.placement) == 4  # MAX_INSTANCES
    assert all(i * t <= 8 for i, t in big.placement if (i, t) != (1, 2))
    assert all(max(p, default=0) <= 16 or p == BASE.preferred_batch_sizes for p in big.preferred_batch_sizes)


def test_space_of_a_model_without_batching_only_places_instances():
    base = Candidate(1, 1, 0, ())
    space = build_space(base, cpus=4, max_batch_size=0)
    assert space.preferred_batch_sizes == ((),) and space.max_queue_delay_us == (0,)
    assert len(space.placement) > 1


# --------------------------------------------------------------------------------------------- search


def test_coordinate_descent_finds_the_best_in_each_dimension():
    measure, calls = fake_measure(score)
    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(),
                             budget_s=1e9, max_candidates=100)
    assert out.stopped == "converged"
    assert out.best.candidate == Candidate(2, 1, 0, (8,))
    assert calls[0] == BASE  # the baseline first
    assert len({c.key for c in calls}) == len(calls)  # nothing measured twice


def test_p99_objective_excludes_candidates_that_break_it():
    # The fastest placement breaks the p99 objective: the best one that meets it wins.
    measure, _ = fake_measure(score, p99=lambda c: 50.0 if c.instances == 2 else 5.0)
    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(max_p99_ms=20),
                             budget_s=1e9, max_candidates=100)
    assert out.best.candidate.instances == 1
    assert out.best.meets(Objective(max_p99_ms=20))
    assert any(not r.meets(Objective(max_p99_ms=20)) for r in out.results)


def test_no_candidate_meets_the_objective():
    measure, _ = fake_measure(score, p99=lambda c: 50.0)
    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(max_p99_ms=20),
                             budget_s=1e9, max_candidates=100)
    assert out.best is None


def test_p99_at_a_concurrency_is_checked_at_that_level():
    obj = Objective(max_p99_ms=10, p99_concurrency=4)
    r = Result(BASE, [Level(4, 100, 8.0), Level(8, 180, 30.0)])
    assert r.meets(obj) and r.best_level(obj).concurrency == 8  # throughput anywhere, p99 where the SLO says
    assert not Result(BASE, [Level(4, 100, 12.0), Level(8, 180, 30.0)]).meets(obj)
    assert not Result(BASE, [Level(8, 180, 3.0)]).meets(obj)  # its concurrency was never measured


def test_failed_candidate_is_never_best():
    def measure(c):
        if c.instances == 2:
            return Result(c, [], error="load failed: out of memory")
        return Result(c, [Level(8, score(c), 5.0)])

    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(),
                             budget_s=1e9, max_candidates=100)
    assert out.best.candidate.instances == 1
    assert any(r.error for r in out.results)


def test_budget_bounds_the_search_but_the_baseline_is_always_measured():
    clock = FakeClock()
    measure, calls = fake_measure(score, clock, cost=10.0)
    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(),
                             budget_s=35.0, max_candidates=100, clock=clock)
    assert out.stopped == "budget"
    assert len(calls) == 3  # a 4th would end at 40 s > 35 s
    assert clock.t <= 35.0
    clock2 = FakeClock()
    measure2, calls2 = fake_measure(score, clock2, cost=10.0)
    out2 = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure2, Objective(),
                              budget_s=0.001, max_candidates=100, clock=clock2)
    assert [c for c in calls2] == [BASE] and out2.stopped == "budget"


def test_max_candidates_bounds_the_search():
    measure, calls = fake_measure(score)
    out = coordinate_descent(BASE, build_space(BASE, cpus=2, max_batch_size=64), measure, Objective(),
                             budget_s=1e9, max_candidates=2)
    assert len(calls) == 2 and out.stopped == "max-candidates"


def test_known_results_are_reused_not_measured():
    measure, first_calls = fake_measure(score)
    space = build_space(BASE, cpus=2, max_batch_size=64)
    first = coordinate_descent(BASE, space, measure, Objective(), budget_s=1e9, max_candidates=3)
    known = {r.candidate.key: r for r in first.results}
    measure2, calls2 = fake_measure(score)
    second = coordinate_descent(BASE, space, measure2, Objective(), budget_s=1e9, max_candidates=100, known=known)
    assert not {c.key for c in calls2} & set(known)  # nothing measured twice across runs
    assert second.best.candidate == Candidate(2, 1, 0, (8,))


# --------------------------------------------------------------------------------------------- sweep rules


def test_sweep_levels_double_and_include_the_objective_concurrency():
    assert sweep_levels(32, Objective()) == [1, 2, 4, 8, 16, 32]
    assert sweep_levels(10, Objective(10, 6)) == [1, 2, 4, 6, 8, 10]


def test_sweep_stops_when_p99_breaks_or_throughput_plateaus():
    obj = Objective(max_p99_ms=20)
    assert keep_sweeping([Level(1, 100, 5)], obj, [2, 4])
    assert not keep_sweeping([Level(1, 100, 5), Level(2, 190, 25)], obj, [4])  # p99 broken
    assert not keep_sweeping([Level(1, 100, 5), Level(2, 102, 9)], obj, [4])  # +2 %: plateau
    assert not keep_sweeping([Level(1, 100, 5, errors=3)], obj, [2])
    assert not keep_sweeping([Level(1, 100, 5)], obj, [])
    # The objective's own concurrency is measured even past a broken p99.
    assert keep_sweeping([Level(1, 100, 5), Level(2, 190, 25)], Objective(20, 8), [4, 8])


# --------------------------------------------------------------------------------------------- served config


def _served(text: str) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True)


def test_candidate_config_sets_only_the_tuned_fields():
    base = _served((model_repo_dir() / "text_encoder" / "config.pbtxt").read_text())
    c = Candidate(2, 1, 500, (8,))
    cfg = candidate_config(base, c)
    assert baseline_of(cfg, cpus=2) == c
    assert cfg["instance_group"][0]["count"] == 2 and cfg["instance_group"][0]["kind"] == "KIND_CPU"
    assert cfg["parameters"][THREADS_PARAMETER] == {"string_value": "1"}
    assert cfg["model_warmup"] == base["model_warmup"] and cfg["input"] == base["input"]
    # Triton parses the override with protobuf's JSON parser: the dict must be a valid ModelConfig.
    from google.protobuf.json_format import ParseDict

    ParseDict(cfg, model_config_pb2.ModelConfig())


def test_baseline_threads_follow_model_py_when_not_pinned():
    base = _served((model_repo_dir() / "text_encoder" / "config.pbtxt").read_text())
    base.get("parameters", {}).pop(THREADS_PARAMETER, None)
    assert baseline_of(base, cpus=4).threads == (4 - 1) // baseline_of(base, cpus=4).instances  # model.py leaves one CPU
    pytorch = dict(base, backend="pytorch")
    assert "INTRA_OP_THREAD_COUNT" in candidate_config(pytorch, BASE)["parameters"]


# --------------------------------------------------------------------------------------------- config.pbtxt


@pytest.mark.parametrize("model", ["text_encoder", "image_classifier"])
def test_tuned_text_changes_only_the_tuned_fields_and_keeps_comments(model):
    text = (model_repo_dir() / model / "config.pbtxt").read_text()
    c = Candidate(2, 1, 500, (8,))
    new = tuned_text(text, c, where=model)
    cfg = text_format.Parse(new, model_config_pb2.ModelConfig())
    assert cfg.instance_group[0].count == 2
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.parameters[THREADS_PARAMETER].string_value == "1"
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert all(line in new.splitlines() for line in comments)
    # Everything else equal: the original with these four fields set is what was written.
    old = text_format.Parse(text, model_config_pb2.ModelConfig())
    old.instance_group[0].count = 2
    old.dynamic_batching.max_queue_delay_microseconds = 500
    del old.dynamic_batching.preferred_batch_size[:]
    old.dynamic_batching.preferred_batch_size.append(8)
    old.parameters[THREADS_PARAMETER].string_value = "1"
    assert cfg == old
    # Idempotent, and an existing threads parameter is edited in place (not added twice).
    assert tuned_text(new, c, where=model) == new
    again = tuned_text(new, Candidate(1, 2, 0, ()), where=model)
    assert again.count(THREADS_PARAMETER) == 1 and "preferred_batch_size" not in again


def test_tuned_text_handles_other_layouts_and_comments_with_braces():
    text = (
        'name: "m"  # a comment with { braces [ and count: 9\n'
        "max_batch_size: 8\n"
        'input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }\n'
        'output { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }\n'
        "dynamic_batching { preferred_batch_size: 2 preferred_batch_size: 4 }\n"
        "instance_group { kind: KIND_CPU }\n"
        'parameters [ { key: "other" value { string_value: "count: 1 }" } } ]\n'
    )
    new = tuned_text(text, Candidate(2, 3, 100, (8,)), where="m")
    cfg = text_format.Parse(new, model_config_pb2.ModelConfig())
    assert cfg.instance_group[0].count == 2 and cfg.parameters[THREADS_PARAMETER].string_value == "3"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8] and cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert cfg.parameters["other"].string_value == "count: 1 }"
    assert "# a comment with { braces [ and count: 9" in new
    bare = 'name: "m"\nmax_batch_size: 8\ninput { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }\n'
    cfg = text_format.Parse(tuned_text(bare, Candidate(1, 1, 0, (4,)), where="m"), model_config_pb2.ModelConfig())
    assert cfg.instance_group[0].count == 1 and list(cfg.dynamic_batching.preferred_batch_size) == [4]


def test_tuned_text_leaves_threads_alone_when_not_pinned():
    text = (model_repo_dir() / "text_encoder" / "config.pbtxt").read_text()
    new = tuned_text(text, Candidate(2, 1, 2000, (16, 32)), where="t", set_threads=False)
    assert THREADS_PARAMETER not in new


def test_tuned_text_refuses_several_instance_groups():
    text = 'name: "m"\ninstance_group [ { count: 1 kind: KIND_CPU }, { count: 1 kind: KIND_CPU } ]\n'
    with pytest.raises(UserError, match="2 groups"):
        tuned_text(text, BASE, where="m/config.pbtxt")


def test_write_atomically_keeps_the_mode_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "config.pbtxt"
    p.write_text("a")
    p.chmod(0o640)
    write_atomically(p, "b")
    assert p.read_text() == "b" and p.stat().st_mode & 0o777 == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["config.pbtxt"]


# --------------------------------------------------------------------------------------------- results file


def test_results_file_round_trip_and_a_partial_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    rf = ResultsFile(path, "text_encoder").check()
    rf.open_for_append()
    r = Result(BASE, [Level(4, 500.0, 9.5)])
    rf.append(r)
    with open(path, "a") as f:
        f.write('{"kind": "result", "cand')  # killed mid-write
    again = ResultsFile(path, "text_encoder").check()
    assert list(again.known) == [BASE.key]
    assert again.known[BASE.key].levels == r.levels and again.known[BASE.key].resumed
    again.open_for_append()
    again.append(Result(Candidate(2, 1, 0, ()), [Level(4, 600.0, 9.0)]))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)
    assert json.loads(lines[0])["model"] == "text_encoder"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "header", "format": 1, "model": "image_classifier"}\n', "holds the results of model 'image_classifier'"),
        ("not json\n", "line 1 is not JSON"),
        ('{"kind": "result"}\n', "first line is not a models tune header"),
        ('{"kind": "header", "format": 1, "model": "text_encoder"}\n{"kind": "result"}\n', "line 2 is not a models tune result"),
    ],
)
def test_results_file_of_something_else_is_refused(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match="--results") as info:
        ResultsFile(path, "text_encoder").check()
    assert message in info.value.message and info.value.exit_code == 2


# --------------------------------------------------------------------------------------------- CLI bad input


@pytest.fixture
def small_repo(tmp_path) -> Path:
    # Only the configs: bad input is refused before anything reads an artifact.
    repo = tmp_path / "model_repo"
    for m in ("text_encoder", "image_classifier"):
        (repo / m / "1").mkdir(parents=True)
        shutil.copy(model_repo_dir() / m / "config.pbtxt", repo / m / "config.pbtxt")
    return repo


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["no_such_model"], "MODEL 'no_such_model': no such model"),
        (["text_encoder", "--budget", "0"], "--budget 0"),
        (["text_encoder", "--budget", "-5"], "--budget -5"),
        (["text_encoder", "--max-p99-ms", "0"], "--max-p99-ms 0"),
        (["text_encoder", "--max-candidates", "0"], "--max-candidates 0"),
        (["text_encoder", "--cpus", "0"], "--cpus 0"),
        (["text_encoder", "--url", "not a url"], "--url"),
        (["text_encoder", "--url", "http://127.0.0.1:8000"], "--url http://127.0.0.1:8000"),
        (["text_encoder", "--stacks-dir", "stacks"], "--stacks-dir"),
        (["text_encoder", "--stack", "no-such"], "no-such"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(args, needle, small_repo, tmp_path, capsys):
    code, out, err = run_cli(["models", "tune", *args, "--repo", str(small_repo), "--results", str(tmp_path / "r.jsonl"),
                              "--state-dir", str(tmp_path / "plane")], capsys)
    assert code == 2, out + err
    assert needle in " ".join((out + err).split())
    assert not (tmp_path / "plane").exists() and not (tmp_path / "r.jsonl").exists()  # nothing started or written


def test_results_file_of_another_model_exits_2(small_repo, tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_text('{"kind": "header", "format": 1, "model": "image_classifier"}\n')
    code, out, err = run_cli(["models", "tune", "text_encoder", "--repo", str(small_repo), "--results", str(results),
                              "--state-dir", str(tmp_path / "plane")], capsys)
    assert code == 2 and "--results" in err and "image_classifier" in err
    assert not (tmp_path / "plane").exists()


def test_unreachable_url_exits_2(small_repo, tmp_path, capsys):
    from hybridserve.local.process import free_ports

    port = free_ports(1)[0]  # nothing listens there
    code, out, err = run_cli(["models", "tune", "text_encoder", "--repo", str(small_repo), "--url", f"127.0.0.1:{port}",
                              "--results", str(tmp_path / "r.jsonl")], capsys)
    assert code == 2, out + err
    assert f"--url 127.0.0.1:{port}: no Triton server answers there" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_stack_gives_the_p99_objective_and_the_flag_overrides_it(small_repo, tmp_path):
    from hybridserve.paths import repo_root
    from hybridserve.stackconfig.loader import load_stack
    from hybridserve.tune.command import TuneOptions, check_options

    stacks = repo_root() / "stacks"
    want = load_stack("search-dev", stacks).serving.slo_for("text_encoder")
    o = TuneOptions(model="text_encoder", repo_dir=small_repo, stack="search-dev", stacks_dir=stacks,
                    results_path=tmp_path / "r.jsonl")
    objective = check_options(o)[0]
    assert objective == Objective(want.max_p99_ms, want.p99_concurrency) and objective.max_p99_ms is not None
    o.max_p99_ms = 7.5
    assert check_options(o)[0].max_p99_ms == 7.5


def test_an_interrupted_search_keeps_every_finished_candidate(tmp_path):
    path = tmp_path / "r.jsonl"
    rf = ResultsFile(path, "text_encoder").check()
    rf.open_for_append()
    measure, calls = fake_measure(score)

    def interrupted(c):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third candidate
        return measure(c)

    space = build_space(BASE, cpus=2, max_batch_size=64)
    with pytest.raises(KeyboardInterrupt):
        coordinate_descent(BASE, space, interrupted, Objective(), budget_s=1e9, max_candidates=100, on_result=rf.append)
    rerun = ResultsFile(path, "text_encoder").check()
    assert set(rerun.known) == {c.key for c in calls} and len(calls) == 2
    measure2, calls2 = fake_measure(score)
    coordinate_descent(BASE, space, measure2, Objective(), budget_s=1e9, max_candidates=100, known=rerun.known)
    assert not {c.key for c in calls2} & set(rerun.known)


@pytest.mark.parametrize(("args", "needle"), [(["--window", "0"], "--window 0"), (["--max-concurrency", "0"], "--max-concurrency 0")])
def test_measurement_flags_are_named(args, needle, small_repo, tmp_path, capsys):
    code, out, err = run_cli(["models", "tune", "text_encoder", *args, "--repo", str(small_repo),
                              "--results", str(tmp_path / "r.jsonl")], capsys)
    assert code == 2 and needle in err


def test_repo_that_is_a_file_is_named(tmp_path, capsys):
    f = tmp_path / "model_repo"
    f.write_text("")
    code, out, err = run_cli(["models", "tune", "text_encoder", "--repo", str(f)], capsys)
    assert code == 2 and "--repo" in err and "is a file, not a directory" in err


def test_results_path_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match="--results") as info:
        ResultsFile(tmp_path, "text_encoder").check()
    assert "is a directory" in info.value.message


def test_the_default_thread_rule_is_model_pys():
    # tune decides whether --write pins threads by comparing with what model.py picks by itself.
    import ast
    import types

    from hybridserve.paths import model_repo_dir
    from hybridserve.tune.measure import default_threads

    source = (model_repo_dir() / "text_encoder" / "1" / "model.py").read_text()
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "_intra_op_threads")
    namespace: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "model.py", "exec"), namespace)
    for cpus in (1, 2, 3, 8):
        for instances in (1, 2, 3):
            # A stand-in os for the function alone: the real module is not touched.
            namespace["os"] = types.SimpleNamespace(sched_getaffinity=lambda _pid, n=cpus: set(range(n)), cpu_count=lambda: cpus)
            config = {"instance_group": [{"count": instances}]}
            assert namespace["_intra_op_threads"](config) == default_threads(cpus, instances), (cpus, instances)
