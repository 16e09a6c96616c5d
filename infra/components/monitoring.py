"""Serving monitoring on one cluster (`ClusterMonitoring`, "hybridserve:serving:ClusterMonitoring").

What Triton's ServiceMonitor and its queue-time autoscaler stand on (`hybridserve:serving.monitoring`):

- `prometheus: install`: kube-prometheus-stack (Prometheus operator, its CRDs, a Prometheus that
  selects every ServiceMonitor of the cluster; Grafana off: its chart ships a default admin
  password) in `monitoring.namespace`;
- `install` or `existing`: prometheus-adapter with one rule, Triton's average queue time per
  request in milliseconds per pod (`triton_queue_time_ms`), served on the custom metrics API for
  the HorizontalPodAutoscaler;
- the NVIDIA DCGM exporter on the GPU nodes where `monitoring.dcgm_exporter` (on EKS with the device
  plugin; the GPU operator on Magnum runs its own, configured by the cluster component).

Charts are pinned in hybridserve/stackconfig/catalog.py (HELM_CHARTS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from hybridserve.stackconfig.catalog import HELM_CHARTS
from hybridserve.stackconfig.schema.clusters import GPU_PRESENT_LABEL
from hybridserve.stackconfig.schema.serving import Monitoring
from infra.components import type_token
from infra.components.cluster import ClusterHandle

PROMETHEUS_RELEASE = "kps"  # short fullnameOverride: the Prometheus service is "<release>-prometheus"
# The custom metric the HPA reads (per pod): milliseconds a request waited in Triton's queue, over 1 minute.
QUEUE_TIME_METRIC = "triton_queue_time_ms"
QUEUE_TIME_RULE: dict[str, Any] = {
    "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
    "name": {"matches": "^nv_inference_queue_duration_us$", "as": QUEUE_TIME_METRIC},
    # Cumulative microseconds in the queue / requests, both as 1-minute rates: the mean wait per request.
    "metricsQuery": (
        "sum(rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>) / 1000 / "
        "clamp_min(sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>), 0.001)"
    ),
}


@dataclass
class ClusterMonitoringArgs:
    cluster: ClusterHandle
    cfg: Monitoring
    # The DCGM exporter chart is for clusters whose GPU stack has none (the device plugin, not the GPU operator).
    install_dcgm_exporter: bool


def _split_url(url: str) -> tuple[str, int | None]:
    """prometheus-adapter takes the port apart from the URL ("http://h:9090/p" -> ("http://h/p", 9090))."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    name, _, port = host.partition(":")
    return f"{scheme}://{name}" + (f"/{path}" if path else ""), int(port) if port else None


class ClusterMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("serving", "ClusterMonitoring"), name, None, opts)
        cfg, cluster = args.cfg, args.cluster
        self.namespace = cfg.namespace
        # What a ServiceMonitor or the queue-time HPA must wait for (CRDs, the custom metrics API).
        self.ready: list[pulumi.Resource] = []

        def release(release_name: str, chart_name: str, namespace: str, values: dict[str, Any], after: list[pulumi.Resource]) -> k8s.helm.v3.Release:
            chart = HELM_CHARTS[chart_name]
            return k8s.helm.v3.Release(
                # URNs carry the parent's type, not its name: one per site needs the component's name in it.
                f"{name}-{release_name}", name=release_name, chart=chart.name, version=chart.version, repository_opts={"repo": chart.repository},
                namespace=namespace, create_namespace=True, values=values,
                opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[*cluster.ready, *after]),
            )

        system = dict(cluster.system_node_selector)
        url = cfg.prometheus_url
        if cfg.prometheus == "install":
            self.prometheus = release(
                PROMETHEUS_RELEASE, "kube-prometheus-stack", cfg.namespace,
                {
                    "fullnameOverride": PROMETHEUS_RELEASE,
                    # Scrape every ServiceMonitor, not only those labelled for this release.
                    "prometheus": {"prometheusSpec": {
                        "serviceMonitorSelectorNilUsesHelmValues": False,
                        "podMonitorSelectorNilUsesHelmValues": False,
                        "retention": "15d",
                        "nodeSelector": system,
                    }},
                    "grafana": {"enabled": False},
                    "prometheusOperator": {"nodeSelector": system},
                    "kube-state-metrics": {"nodeSelector": system},
                },
                [],
            )
            self.ready.append(self.prometheus)
            url = f"http://{PROMETHEUS_RELEASE}-prometheus.{cfg.namespace}.svc:9090"
        if url is not None:
            base, port = _split_url(url)
            self.adapter = release(
                "prometheus-adapter", "prometheus-adapter", cfg.namespace,
                {"prometheus": {"url": base, "port": port or (443 if base.startswith("https") else 80)}, "rules": {"default": False, "custom": [QUEUE_TIME_RULE]}, "nodeSelector": system},
                list(self.ready),
            )
            self.ready.append(self.adapter)
        if cfg.dcgm_exporter and args.install_dcgm_exporter:
            tolerations: list[dict[str, str]] = []
            for pool in cluster.gpu_pools:
                tolerations += [t for t in pool.tolerations() if t not in tolerations]
            self.dcgm_exporter = release(
                "dcgm-exporter", "dcgm-exporter", "nvidia-dcgm-exporter",
                {"nodeSelector": {GPU_PRESENT_LABEL: "true"}, "tolerations": tolerations, "serviceMonitor": {"enabled": cfg.prometheus != "none"}},
                list(self.ready),  # its ServiceMonitor needs the operator's CRD
            )
        self.register_outputs({"namespace": self.namespace})
