"""`hybridserve edge status --stack NAME`: its flags and a stack's unreachable hosts.

The stack is a copy of search-dev whose edge sites point at a runtime: store-berlin with an SLO the host meets,
store-munich (a third edge site) with one no host can meet, store-lyon at a closed port. The check against a real
edge runtime (healthy, SLO missed, down) is in tests/test_edge_runtime.py, on that file's module-scoped host: a
runtime of its own here would cost a second SeaweedFS cache and tritonserver start for one test.
"""

from __future__ import annotations

import json
import socket

import pytest
from cliutil import run_cli
from test_network import variant

from hybridserve.local.process import free_ports


def status_stack(tmp_path, http: int, grpc: int, closed: int):
    def site(name, cidr, gateway, slo, ports):
        return {"name": name, "kind": "edge", "cidrs": [cidr], "vpn_gateway_ip": gateway, "links": [{"to": "openstack"}],
                "hosts": [{"name": "edge-1", "address": cidr.replace("0/24", "10"), "ssh_user": "hybridserve"}],
                "inference_cidrs": [cidr], "http_port": ports[0], "grpc_port": ports[1], "metrics_port": ports[2],
                "ssh_proxy": {"address": "10.120.0.10", "user": "jump"},  # search-dev's runner is in the AWS VPC
                "models": {"text_encoder": {"variant": "full", "slo": slo}}}

    def edit(c):
        c["hybridserve:sites"] = [
            {"name": "aws", "kind": "aws"}, {"name": "openstack", "kind": "openstack"},
            site("store-berlin", "192.168.50.0/24", "203.0.113.10", {"max_p99_ms": 10000, "concurrency": 1}, (http, grpc, closed + 1)),
            site("store-lyon", "192.168.60.0/24", "203.0.113.20", {"max_p99_ms": 10000}, (closed, closed + 2, closed + 3)),
            site("store-munich", "192.168.70.0/24", "203.0.113.30", {"max_p99_ms": 0.001, "concurrency": 1}, (http, grpc, closed + 4)),
        ]
    return variant(tmp_path, "search-dev", edit)


def test_status_without_the_address_override_probes_the_stack_address(tmp_path, capsys):
    (closed,) = free_ports(1)
    path = status_stack(tmp_path, closed, closed + 1, closed + 2)
    code, out, _ = run_cli(["edge", "status", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--json", "--no-gate",
                            "--probe-timeout", "1", "--site", "store-lyon"], capsys)
    assert code == 1
    (only,) = json.loads(out)
    assert only["address"] == "192.168.60.10" and only["state"] == "down"


@pytest.mark.parametrize(("args", "words"), [
    (["--site", "store-paris"], "--site store-paris: not an edge site of search-dev"),
    (["--address", "store-berlin=127.0.0.1"], "--address 'store-berlin=127.0.0.1': expected SITE/HOST=ADDRESS"),
    (["--address", "store-berlin/edge-9=127.0.0.1"], "--address store-berlin/edge-9: no such host"),
    (["--window", "0"], "Invalid value for '--window'"),
    # The slowest host names the figures: store-lyon's one model at concurrency 1 and its SLO's, 3 stable windows each.
    (["--window", "200"], "--window 200 with --gate-timeout 300: even the shortest gate run that can pass takes 1200 s on "
                          "store-lyon/edge-1 (1 model(s), at least 3 windows of 200 s per concurrency level), more than "
                          "--gate-timeout; give --window at most 50 or --gate-timeout at least 1200"),
    (["--site", "store-berlin", "--window", "200"], "--window 200 with --gate-timeout 300: even the shortest gate run that can "
                                                    "pass takes 600 s on store-berlin/edge-1"),
    (["--gate-timeout", "10"], "--window unset (the quick profile's 2 s) with --gate-timeout 10: even the shortest gate run "
                               "that can pass takes 12 s on store-lyon/edge-1"),
])
def test_bad_flags_exit_2_naming_the_flag(capsys, args, words):
    code, _, err = run_cli(["edge", "status", "--stack", "search-dev", *args], capsys)
    assert code == 2 and words in err, err


def test_a_stack_without_edge_sites_is_refused(capsys):
    code, _, err = run_cli(["edge", "status", "--stack", "vision-dev"], capsys)
    assert code == 2 and "has no edge site" in err


def test_a_window_the_gate_timeout_cannot_hold_is_refused_before_any_request(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        (closed,) = free_ports(1)
        path = status_stack(tmp_path, port, closed, closed + 1)  # probes (HTTP) would reach the listener
        code, out, err = run_cli(["edge", "status", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--site", "store-berlin",
                                  "--address", "store-berlin/edge-1=127.0.0.1", "--probe-timeout", "0.5",
                                  "--window", "50", "--gate-timeout", "120"], capsys)
        assert code == 2 and out == "", out
        assert ("--window 50 with --gate-timeout 120: even the shortest gate run that can pass takes 150 s on store-berlin/edge-1"
                in err and "give --window at most 40 or --gate-timeout at least 150" in err), err
        with pytest.raises(BlockingIOError):  # the host was never contacted
            listener.accept()


def test_a_window_whose_worst_case_may_pass_the_gate_timeout_is_a_warning(tmp_path, capsys):
    # 3 windows of 40 s fit 120 s; 5 s readiness wait and 4 windows plus one of 40 s (205 s) may not.
    (closed,) = free_ports(1)
    path = status_stack(tmp_path, closed, closed + 1, closed + 2)
    code, out, err = run_cli(["edge", "status", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--site", "store-berlin",
                              "--probe-timeout", "0.5", "--json", "--window", "40", "--gate-timeout", "120"], capsys)
    assert code == 1 and json.loads(out)[0]["state"] == "down"  # it went on: the host was probed
    assert ("warning: --window 40 with --gate-timeout 120: the gate's worst case takes 205 s on store-berlin/edge-1" in err
            and "give --window at most 23 or --gate-timeout at least 205" in err), err
