"""The smoke gate without the kit: what an in-cluster Job runs from NVIDIA's Triton SDK image (numpy and
tritonclient only). The interpreter here blocks the kit and every library the SDK image lacks (gateenv.py);
the run against a real server under the same block is in test_smoke_servers.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from gateenv import BLOCKED, SITE_FAILED, blocked_env

SMOKE_TESTS = Path(__file__).resolve().parent.parent / "smoke_tests"

# The kit and what only the kit installs: never imported by the gate, not even inside a function.
NEVER = ("hybridserve", "pulumi", "infra", "typer", "pydantic", "yaml")


def _run(args: list[str], env: dict, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr and SITE_FAILED not in proc.stderr, proc.stdout + proc.stderr
    return proc


def test_no_smoke_tests_module_imports_the_kit_even_lazily():
    found = []
    for path in sorted(SMOKE_TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}:{node.lineno}: {n}" for n in names if n.partition(".")[0] in NEVER]
    assert found == []


def test_every_module_imports_and_help_runs_without_the_kit(tmp_path):
    env = blocked_env(tmp_path / "site", HYBRIDSERVE_ROOT=str(tmp_path))
    code = (
        "import importlib, pkgutil, runpy, sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'the block does not work: {name} imported')\n"
        "import smoke_tests\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(smoke_tests.__path__, 'smoke_tests.'))\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "for name in smoke_tests.__all__:\n"
        "    getattr(smoke_tests, name)\n"
        "print('MODULES', ' '.join(names))\n"
        "sys.argv = ['smoke_tests', '--help']\n"
        "try:\n"
        "    runpy.run_module('smoke_tests', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    print('EXIT', exc.code)\n"
    )
    proc = _run(["-c", code], env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modules = proc.stdout.split("MODULES ", 1)[1].split("\n", 1)[0].split()
    assert {"smoke_tests.cli", "smoke_tests.runner", "smoke_tests.report", "smoke_tests.gatespec",
            "smoke_tests.loadgen", "smoke_tests.references", "smoke_tests.__main__"} <= set(modules)
    assert "EXIT 0" in proc.stdout
    help_text = " ".join(proc.stdout.split())
    assert "usage: python -m smoke_tests" in help_text and "--slos JSON|@FILE" in help_text
    assert "HYBRIDSERVE-SMOKE-REPORT" in help_text and "--stack " not in help_text  # the kit's option stays in the kit


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--slos", '{"slos": {"*": {"min_throughput": -1}}}'], "error: --slos: slos.*.min_throughput = -1: expected a number above 0"),
        (["--slos", '{"modles": null}'], "error: --slos: unknown key 'modles'"),
        (["--plot", "smoke.png"], "error: --plot smoke.png: writing the PNG needs matplotlib, which is not installed"),
        (["--min-throughput", "m=1@"], "[MODEL=]N[@CONCURRENCY]"),
        (["--stack", "vision-dev"], "No such option: --stack"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_input_exits_2_without_a_traceback_and_without_the_kit(tmp_path, args, needle):
    env = blocked_env(tmp_path / "site", HYBRIDSERVE_ROOT=str(tmp_path))
    proc = _run(["-m", "smoke_tests", "--url", "127.0.0.1:1", "--model", "m", "--no-correctness", *args], env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in " ".join(proc.stderr.split())
    assert "cannot reach" not in proc.stderr  # refused before the endpoint is contacted


def test_an_unreachable_endpoint_still_prints_the_report_line(tmp_path):
    """`--json -` when the run fails: exit 3, the error on stderr, the report (with the error) on stdout."""
    import socket

    from smoke_tests.report import extract_report

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    env = blocked_env(tmp_path / "site", HYBRIDSERVE_ROOT=str(tmp_path))
    proc = _run(["-m", "smoke_tests", "--url", f"127.0.0.1:{port}", "--model", "m", "--no-correctness", "--json", "-",
                 "--out-dir", str(tmp_path / "out")], env, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "error: server liveness: cannot reach" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    report = extract_report(proc.stdout)
    assert report is not None and report["exit_code"] == 3 and report["error"]["exit_code"] == 3
    # --out-dir without matplotlib: the three text reports, no PNG, and a note why; stdout has the JSON instead.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["smoke.csv", "smoke.junit.xml"]
    assert "no smoke.png (matplotlib is not installed)" in proc.stderr
