"""Monthly compute cost estimate of a stack, at the node pools' min and max sizes.

Counted: the EKS control plane, EKS node groups (system and GPU), the Magnum masters and default
workers, and the Magnum GPU node groups, priced from `catalog.py` (AWS on-demand list prices,
OpenStack chargeback rates). Edge sites are listed per host at zero compute cost (hardware the operator
owns), with the AWS VPN connection of each edge link to AWS and a line naming the data transfer price (not
estimated: it depends on traffic). Not counted: NAT gateways, load balancers, the hubs' own VPN connection,
storage, data transfer. A pool with several instance types is priced at its first one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridserve.stackconfig.catalog import (
    AWS_INSTANCE_TYPES,
    AWS_TRANSFER_OUT_USD_PER_GB,
    AWS_VPN_CONNECTION_USD_PER_HOUR,
    EKS_CONTROL_PLANE_USD_PER_HOUR,
    EKS_EXTENDED_SUPPORT_USD_PER_HOUR,
    HOURS_PER_MONTH,
    MachineType,
    eks_support,
)
from hybridserve.stackconfig.schema.stack import StackConfig


@dataclass(frozen=True)
class CostLine:
    cloud: str  # the site: "aws" | "openstack" | "edge:<site name>"
    item: str
    machine: str
    gpu: str  # e.g. "1× T4", "" for CPU
    usd_per_hour: float  # per node
    min_nodes: int
    max_nodes: int

    @property
    def monthly_min(self) -> float:
        return self.usd_per_hour * self.min_nodes * HOURS_PER_MONTH

    @property
    def monthly_max(self) -> float:
        return self.usd_per_hour * self.max_nodes * HOURS_PER_MONTH


@dataclass(frozen=True)
class CostEstimate:
    stack: str
    lines: tuple[CostLine, ...]

    @property
    def monthly_min(self) -> float:
        return sum(line.monthly_min for line in self.lines)

    @property
    def monthly_max(self) -> float:
        return sum(line.monthly_max for line in self.lines)

    def as_dict(self) -> dict:
        return {
            "stack": self.stack,
            "hours_per_month": HOURS_PER_MONTH,
            "lines": [
                {**line.__dict__, "monthly_min": round(line.monthly_min, 2), "monthly_max": round(line.monthly_max, 2)}
                for line in self.lines
            ],
            "monthly_min": round(self.monthly_min, 2),
            "monthly_max": round(self.monthly_max, 2),
        }


def _gpu(m: MachineType) -> str:
    return f"{m.gpu_count}× {m.gpu_model}" if m.is_gpu else ""


def estimate(cfg: StackConfig) -> CostEstimate:
    lines: list[CostLine] = []
    eks = cfg.aws.eks
    extended = eks_support(eks.version) == "extended"
    control = EKS_EXTENDED_SUPPORT_USD_PER_HOUR if extended else EKS_CONTROL_PLANE_USD_PER_HOUR
    lines.append(CostLine("aws", "EKS control plane" + (" (extended support)" if extended else ""), "-", "", control, 1, 1))
    m = AWS_INSTANCE_TYPES[eks.system_pool.instance_types[0]]
    lines.append(CostLine("aws", "EKS system pool", m.name, "", m.usd_per_hour, eks.system_pool.min_size, eks.system_pool.max_size))
    for pool in eks.gpu_pools:
        m = AWS_INSTANCE_TYPES[pool.instance_types[0]]
        lines.append(CostLine("aws", f"EKS GPU pool {pool.name}", m.name, _gpu(m), m.usd_per_hour, pool.min_size, pool.max_size))

    flavors = cfg.openstack.flavors()
    magnum = cfg.openstack.magnum
    m = flavors[magnum.template.master_flavor]
    lines.append(CostLine("openstack", "Magnum masters", m.name, "", m.usd_per_hour, magnum.master_count, magnum.master_count))
    m = flavors[magnum.template.worker_flavor]
    lines.append(CostLine("openstack", "Magnum default workers", m.name, "", m.usd_per_hour, magnum.worker_count, magnum.worker_count))
    for pool in magnum.gpu_pools:
        m = flavors[pool.flavor]
        lines.append(CostLine("openstack", f"Magnum GPU pool {pool.name}", m.name, _gpu(m), m.usd_per_hour, pool.min_size, pool.max_size))
    lines += edge_lines(cfg)
    return CostEstimate(cfg.stack_name, tuple(lines))


def edge_lines(cfg: StackConfig) -> list[CostLine]:
    """Per edge site: its hosts (operator-owned: no compute cost), its AWS VPN connection, the transfer price."""
    lines: list[CostLine] = []
    aws_hub = cfg.hub("aws")
    for _, site in cfg.edge_sites():
        where = f"edge:{site.name}"
        for host in site.hosts:
            gpu = f"1× {host.gpu_model}" if host.accelerator == "nvidia-gpu" else ""
            lines.append(CostLine(where, f"host {host.name} (operator-owned)", host.accelerator, gpu, 0.0, 1, 1))
        if aws_hub is not None and any(link.to == aws_hub.name for link in site.links):
            lines.append(CostLine(where, "AWS VPN connection (edge link)", "-", "", AWS_VPN_CONNECTION_USD_PER_HOUR, 1, 1))
            lines.append(CostLine(where, f"data transfer out of AWS to the site: ${AWS_TRANSFER_OUT_USD_PER_GB}/GB, not estimated", "-", "", 0.0, 0, 0))
    return lines
