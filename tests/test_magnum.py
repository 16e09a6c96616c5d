"""The Magnum cluster across `pulumi up`s (issue 11): what a real engine does with the template on a change.

Magnum refuses to update a cluster template that a cluster uses. The kit therefore never updates one: the
template's name carries a hash of what defines it, any change replaces it (created first, the old one deleted
after the old cluster), and the cluster is replaced delete-first: the provider's Update would call Magnum's
cluster upgrade, which the Heat driver refuses since Magnum 2024.1. The mock engine records inputs only; the
resource options a real engine acts on are recorded by the spy below.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_network import PlanView, section, variant

import infra.plan
from infra.plan import plan_stack_file

TEMPLATE = "openstack:containerinfra/clusterTemplate:ClusterTemplate"
CLUSTER = "openstack:containerinfra/cluster:Cluster"


@pytest.fixture
def options(monkeypatch) -> dict[str, dict[str, Any]]:
    """Resource options by (type, name) as the engine receives them with RegisterResource."""
    seen: dict[str, dict[str, Any]] = {}
    original = infra.plan.RecordingMonitor.RegisterResource

    def spy(self, request):
        seen[f"{request.type}::{request.name}"] = {
            "replaceOnChanges": list(request.replaceOnChanges),
            "deleteBeforeReplace": request.deleteBeforeReplace,
            "deleteBeforeReplaceDefined": request.deleteBeforeReplaceDefined,
            "ignoreChanges": list(request.ignoreChanges),
            "propertyDependencies": {k: list(v.urns) for k, v in request.propertyDependencies.items()},
        }
        return original(self, request)

    monkeypatch.setattr(infra.plan.RecordingMonitor, "RegisterResource", spy)
    return seen


def _plan(tmp_path, sub: str, **template):
    d = tmp_path / sub
    d.mkdir()
    return PlanView(plan_stack_file(variant(d, "vision-dev", lambda c: section(c, "openstack", "magnum", "template").update(template))))


def test_a_label_or_field_change_makes_a_new_template_that_replaces_the_old_one_before_it_goes(tmp_path, options):
    first = _plan(tmp_path, "a", labels={"boot_volume_size": "50"})
    first_options = dict(options)
    relabelled = _plan(tmp_path, "b", labels={"boot_volume_size": "60"})
    # kube_tag reaches Magnum as a label too (template_labels); a field outside the labels changes the name as well
    retagged = _plan(tmp_path, "c", labels={"boot_volume_size": "50"}, docker_volume_size_gb=60)
    again = _plan(tmp_path, "d", labels={"boot_volume_size": "50"})

    names = [v.one(TEMPLATE).inputs["name"] for v in (first, relabelled, retagged, again)]
    assert names[0] == names[3], "the same template content must keep its name (no needless replacement)"
    assert len({names[0], names[1], names[2]}) == 3, names
    assert all(n.startswith("hybridserve-vision-dev-k8s-template-") for n in names)
    assert relabelled.one(TEMPLATE).inputs["labels"]["boot_volume_size"] == "60"

    template, cluster = first_options[f"{TEMPLATE}::template"], first_options[f"{CLUSTER}::cluster"]
    # Any input change replaces the template, and the replacement is created before the old one is deleted:
    # the old template outlives the cluster's move to the new one (Magnum refuses to delete a template in use).
    assert template["replaceOnChanges"] == ["*"]
    assert template["deleteBeforeReplaceDefined"] and template["deleteBeforeReplace"] is False
    # The provider would upgrade the cluster in place on a new template id, which Magnum's Heat driver refuses
    # since 2024.1: the cluster is replaced instead, deleted first (GPU quota for one cluster), and the engine
    # knows it depends on the template (so the old template is deleted after the old cluster).
    template_urn = first.one(TEMPLATE).urn
    assert cluster["propertyDependencies"]["clusterTemplateId"] == [template_urn]
    assert first.one(CLUSTER).inputs["clusterTemplateId"] == first.id(first.one(TEMPLATE))
    assert cluster["replaceOnChanges"] == ["clusterTemplateId"]
    assert cluster["deleteBeforeReplaceDefined"] and cluster["deleteBeforeReplace"] is True
    assert "clusterTemplateId" not in cluster["ignoreChanges"]
    # The node groups hang off the cluster (replaced with it); their count stays the autoscaler's.
    groups = [k for k in first_options if k.startswith("openstack:containerinfra/nodeGroup:NodeGroup::")]
    assert groups and all(first_options[k]["propertyDependencies"]["clusterId"] == [first.one(CLUSTER).urn] for k in groups)


def test_the_template_name_fits_magnum_and_ignores_ids_unknown_in_a_preview(tmp_path):
    from infra.components.magnum import template_name

    spec = {"image": "fcos", "labels": {"kube_tag": "v1.30.7"}, "fixed_network": object()}  # an Output stands in
    assert template_name("c", spec) == template_name("c", {**spec, "fixed_network": object()})
    assert template_name("c", spec) != template_name("c", {**spec, "labels": {"kube_tag": "v1.30.8"}})
    assert len(template_name("x" * 200, spec)) <= 255  # Magnum's name column
