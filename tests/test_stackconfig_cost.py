"""The monthly compute cost estimate: catalogue prices × node counts × 730 h."""

from __future__ import annotations

import pytest

from hybridserve.stackconfig import build_stack_config
from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, HOURS_PER_MONTH, OPENSTACK_FLAVORS
from hybridserve.stackconfig.cost import estimate
from stackutil import reachable

BASE = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}


def test_defaults_are_priced_at_min_and_max_node_counts():
    est = estimate(build_stack_config(reachable(BASE)))
    h = HOURS_PER_MONTH
    m6i, g4dn = AWS_INSTANCE_TYPES["m6i.large"].usd_per_hour, AWS_INSTANCE_TYPES["g4dn.xlarge"].usd_per_hour
    master, worker, t4 = (OPENSTACK_FLAVORS[n].usd_per_hour for n in ("m1.large", "m1.xlarge", "gpu.t4.large"))
    fixed = 0.10 * h + master * h + worker * h
    assert est.monthly_min == pytest.approx(fixed + 2 * m6i * h)  # system pool min 2, GPU pools min 0
    assert est.monthly_max == pytest.approx(fixed + 3 * m6i * h + 2 * g4dn * h + 2 * t4 * h)
    assert [line.item for line in est.lines] == [
        "EKS control plane", "EKS system pool", "EKS GPU pool gpu", "Magnum masters", "Magnum default workers", "Magnum GPU pool gpu",
    ]


def test_stack_declared_flavors_use_their_own_rate():
    cfg = build_stack_config(reachable({**BASE, "hybridserve:openstack": {
        "flavor_catalog": {"site.l4": {"vcpus": 8, "memory_gib": 32, "gpu_model": "L4", "gpu_count": 1, "usd_per_hour": 1.0}},
        "magnum": {"gpu_pools": [{"name": "l4", "flavor": "site.l4", "min_size": 1, "desired_size": 1, "max_size": 3}]},
    }}))
    line = next(l for l in estimate(cfg).lines if l.item == "Magnum GPU pool l4")
    assert (line.machine, line.gpu, line.monthly_min, line.monthly_max) == ("site.l4", "1× L4", HOURS_PER_MONTH, 3 * HOURS_PER_MONTH)


def test_catalogue_is_complete_for_every_gpu_type():
    for m in (*AWS_INSTANCE_TYPES.values(), *OPENSTACK_FLAVORS.values()):
        assert m.usd_per_hour > 0 and m.vcpus > 0 and m.memory_gib > 0
        assert (m.gpu_count > 0) == (m.gpu_model is not None) == (m.gpu_memory_gib > 0)
    families = {n.split(".")[0] for n, m in AWS_INSTANCE_TYPES.items() if m.is_gpu}
    assert {"g4dn", "g5", "g6", "p4d", "p5"} <= families
