"""`hybridserve stacks new --team T --env E`: a new team stack that validates and collides with nothing.

The file follows the example stacks (stacks/Pulumi.vision-dev.yaml, Pulumi.vision-prod.yaml): a
non-production environment gets the small one (2 zones, one NAT gateway, GPU pools that scale to zero,
one Magnum master), prod the highly available one (3 zones, a NAT gateway per zone, 3 masters, GPU pools
of at least two nodes, stricter VPN profile, object lock). What must differ between stacks is chosen
against the stacks already in the directory:

- the networks routed over the VPN (VPC, OpenStack network) do not overlap any stack of the same
  `vpn.peering_group` (the VPC a free 10.X.0.0/16 with X in 10..99, the OpenStack network a free
  10.Y.0.0/22 with Y in 100..199, the examples' layout);
- the tunnel inside CIDRs (169.254.N.0/30 and .4/30) are not used by another stack;
- the S3 bucket (global) and the Swift container are unused; the bucket keeps the organisation prefix
  the other stacks use (acme-<team>-<env>-triton-models in the examples).

The result is checked with the same schema and cross-stack checks as `hybridserve validate` before the
file is written; nothing is written if they find a problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from hybridserve.errors import UserError

app = typer.Typer(name="stacks", help="Team stacks: create one (`stacks new`).", no_args_is_help=True)

VPC_OCTETS = range(10, 100)
OPENSTACK_OCTETS = range(100, 200)
TUNNEL_OCTETS = range(20, 250)


class _Dumper(yaml.SafeDumper):
    """Plain YAML a person edits: no anchors and aliases for values used twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _overlaps(cidr: str, taken: list[str]) -> bool:
    # Imported here: the schema package builds every pydantic model, which `hybridserve`'s start-up should not pay.
    from hybridserve.stackconfig.schema.common import overlaps

    return any(overlaps(cidr, t) for t in taken)


def _free(candidates, taken: list[str], what: str) -> str:
    for cidr in candidates:
        if not _overlaps(cidr, taken):
            return cidr
    raise UserError(f"no free {what} left for a new stack in this peering group; pass --peering-group to start another one")


def _cluster_internal_defaults() -> list[str]:
    """The new stack's own cluster-internal networks (schema defaults): its routed networks must avoid them too."""
    from hybridserve.stackconfig.schema.clusters import EksCluster, MagnumCluster

    return [EksCluster.model_fields["service_cidr"].default, MagnumCluster.model_fields["pod_cidr"].default,
            MagnumCluster.model_fields["service_cidr"].default]


def _bucket_prefix(existing: dict[str, Any]) -> str:
    """The organisation prefix the other stacks' buckets share (first '-' part), else 'hybridserve'."""
    prefixes = {cfg.bucket_names()[("storage", "model_bucket")].split("-", 1)[0] for cfg in existing.values()}
    return prefixes.pop() if len(prefixes) == 1 else "hybridserve"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def stack_values(team: str, env: str, cost_center: str, existing: dict[str, Any], *, region: str, cloud: str,
                 peering_group: str, runner_cidrs: list[str], bucket_prefix: str | None) -> dict[str, Any]:
    """The `config:` block of the new stack; `existing` maps a source to the valid config of each other stack."""
    from hybridserve.ci.decide import PROD_RANK, environment_rank

    prod = environment_rank(env) >= PROD_RANK
    peers = [cfg for cfg in existing.values() if cfg.vpn.peering_group == peering_group]
    routed = [c for cfg in peers for _, c in cfg.vpn_reachable_networks()] + _cluster_internal_defaults()
    vpc = _free((f"10.{x}.0.0/16" for x in VPC_OCTETS), routed, "VPC CIDR (10.X.0.0/16)")
    os_net = _free((f"10.{y}.0.0/22" for y in OPENSTACK_OCTETS), routed + [vpc], "OpenStack network CIDR (10.Y.0.0/22)")
    tunnels = [c for cfg in existing.values() for c in cfg.vpn.tunnel_inside_cidrs]
    octet = next((n for n in TUNNEL_OCTETS if not _overlaps(f"169.254.{n}.0/29", tunnels)), None)
    if octet is None:
        raise UserError("no free tunnel inside CIDR (169.254.N.0/30) left; set hybridserve:vpn.tunnel_inside_cidrs by hand")
    names = [n for cfg in existing.values() for n in cfg.bucket_names().values()]
    bucket = _unique(f"{bucket_prefix or _bucket_prefix(existing)}-{team}-{env}-triton-models", set(names))
    container = _unique(f"{team}-{env}-triton-models", set(names))
    # Without the CI's egress addresses the clusters stay private: the runner works from inside the VPC.
    access = {"via": "public_endpoint", "runner_cidrs": runner_cidrs} if runner_cidrs else {"via": "private_network", "runner_cidrs": [vpc]}

    eks: dict[str, Any] = {"deploy_access": dict(access)}
    if runner_cidrs:
        eks["public_access_cidrs"] = list(runner_cidrs)
    magnum: dict[str, Any] = {"deploy_access": dict(access)}
    if prod:
        vpc_cfg = {"cidr": vpc, "az_count": 3, "nat_gateways": "per_az"}
        eks.update(
            log_types=["api", "audit", "authenticator", "controllerManager", "scheduler"],
            system_pool={"instance_types": ["m6i.large"], "min_size": 3, "desired_size": 3, "max_size": 5},
            gpu_pools=[{"name": "a10g", "instance_types": ["g5.xlarge"], "min_size": 2, "desired_size": 2, "max_size": 6, "disk_size_gb": 200}],
        )
        magnum.update(master_count=3, worker_count=2,
                      gpu_pools=[{"name": "a10", "flavor": "gpu.a10.xlarge", "min_size": 2, "desired_size": 2, "max_size": 6, "disk_size_gb": 200}])
        vpn: dict[str, Any] = {
            "ike": {"encryption": "aes-256-gcm-16", "integrity": "sha384", "dh_group": 20},
            "ipsec": {"encryption": "aes-256-gcm-16", "integrity": "sha384", "pfs_group": 20},
        }
        storage_extra: dict[str, Any] = {"kms": {"deletion_window_days": 30}, "retention": {"noncurrent_version_days": 90, "object_lock_days": 30}}
        serving = {
            "replicas": {"min": 2, "max": 6},
            # One pod per g5.xlarge node: 4 vCPUs / 16 GiB less the kubelet's reservations and DaemonSets.
            "resources": {"cpu_request": "3", "cpu_limit": "4", "memory_request": "12Gi", "memory_limit": "14Gi", "gpus": 1},
            "slo": {"min_throughput": 50, "throughput_concurrency": 4, "max_p99_ms": 300, "p99_concurrency": 4, "max_error_rate": 0.001},
        }
    else:
        vpc_cfg = {"cidr": vpc, "az_count": 2, "nat_gateways": "single"}
        eks.update(
            system_pool={"instance_types": ["t3.large"], "min_size": 1, "desired_size": 1, "max_size": 2},
            gpu_pools=[{"name": "t4", "instance_types": ["g4dn.xlarge"], "min_size": 0, "desired_size": 1, "max_size": 2}],
        )
        magnum.update(master_count=1, worker_count=1,
                      gpu_pools=[{"name": "t4", "flavor": "gpu.t4.large", "min_size": 0, "desired_size": 1, "max_size": 2}])
        vpn = {}
        storage_extra = {"retention": {"noncurrent_version_days": 7}}
        serving = {
            "replicas": {"min": 1, "max": 2},
            "resources": {"cpu_request": "2", "cpu_limit": "4", "memory_request": "8Gi", "memory_limit": "12Gi", "gpus": 1},
            "slo": {"min_throughput": 10, "max_p99_ms": 600, "max_error_rate": 0.0},
        }
    vpn["tunnel_inside_cidrs"] = [f"169.254.{octet}.0/30", f"169.254.{octet}.4/30"]
    if peering_group != "default":
        vpn["peering_group"] = peering_group
    return {
        "aws:region": region,
        "pulumi:disable-default-providers": ["aws", "openstack", "kubernetes", "random"],
        "hybridserve:team": team,
        "hybridserve:environment": env,
        "hybridserve:cost_center": cost_center,
        "hybridserve:aws": {"vpc": vpc_cfg, "eks": eks},
        "hybridserve:openstack": {"cloud": cloud, "external_network": "public", "network": {"cidr": os_net}, "magnum": magnum},
        "hybridserve:vpn": vpn,
        "hybridserve:storage": {"model_bucket": bucket, "swift_container": container, **storage_extra},
        "hybridserve:serving": serving,
    }


def _existing_configs(stacks_dir: Path) -> dict[str, Any]:
    from hybridserve.stackconfig.loader import StackConfigError, display_path, load_stack_file, stack_files

    out = {}
    for _name, path in stack_files(stacks_dir).items():
        try:
            out[display_path(path)] = load_stack_file(path)
        except StackConfigError as exc:
            raise UserError(
                f"{display_path(path)} does not validate, so the new stack cannot be checked against it; fix it first "
                "(hybridserve validate)", details=exc.problems,
            ) from None
    return out


def _team_cost_center(team: str, existing: dict[str, Any]) -> str | None:
    centers = {cfg.cost_center for cfg in existing.values() if cfg.team == team}
    return centers.pop() if len(centers) == 1 else None


def _check_label(flag: str, value: str) -> None:
    from hybridserve.stackconfig.schema.common import _check_label as check

    try:
        check(value)
    except ValueError as exc:
        raise UserError(f"{flag} {exc}") from None


@app.command("new")
def new_command(
    team: Annotated[str, typer.Option("--team", help="The owning team, lowercase (e.g. vision).", show_default=False)],
    env: Annotated[str, typer.Option("--env", help="The environment, lowercase: dev, test, staging, prod, ...", show_default=False)],
    cost_center: Annotated[Optional[str], typer.Option("--cost-center", help="Cost center every resource is tagged with. Default: the team's other stacks'.", show_default=False)] = None,
    region: Annotated[str, typer.Option("--region", help="AWS region.")] = "eu-central-1",
    cloud: Annotated[Optional[str], typer.Option("--cloud", help="The clouds.yaml entry of the team's OpenStack. Default: <team>-private.", show_default=False)] = None,
    peering_group: Annotated[str, typer.Option("--peering-group", help="hybridserve:vpn.peering_group: stacks in one group get distinct networks.")] = "default",
    runner_cidrs: Annotated[Optional[list[str]], typer.Option("--runner-cidr", help="Egress CIDR of the CI runners (repeatable): both cluster APIs open to these only. Default: the runner works inside the VPC, APIs private.", show_default=False)] = None,
    bucket_prefix: Annotated[Optional[str], typer.Option("--bucket-prefix", help="Organisation prefix of the S3 bucket name. Default: the one the other stacks use.", show_default=False)] = None,
    stacks_dir: Annotated[Optional[Path], typer.Option("--stacks-dir", help="Directory of the stack files. Default: stacks/ of the checkout.", show_default=False)] = None,
) -> None:
    """Write stacks/Pulumi.<team>-<env>.yaml: a valid stack with networks and bucket names no other stack uses, and the environment's defaults (dev small, prod highly available). Prints the `pulumi stack init` and `pulumi config set --secret` steps."""
    from hybridserve.paths import stacks_dir as default_stacks_dir
    from hybridserve.stackconfig.crossstack import cross_stack_problems
    from hybridserve.stackconfig.loader import STACK_FILE_PREFIX, STACK_FILE_SUFFIX, StackConfigError, build_stack_config, display_path
    from hybridserve.stackconfig.schema.common import net

    _check_label("--team", team)
    _check_label("--env", env)
    for cidr in runner_cidrs or []:
        try:
            net(cidr)
        except ValueError:
            raise UserError(f"--runner-cidr {cidr!r} is not a CIDR, e.g. 198.51.100.0/24") from None
    directory = stacks_dir if stacks_dir is not None else default_stacks_dir()
    if not directory.is_dir():
        raise UserError(f"--stacks-dir {directory}: not a directory")
    name = f"{team}-{env}"
    path = directory / f"{STACK_FILE_PREFIX}{name}{STACK_FILE_SUFFIX}"
    if path.exists():
        raise UserError(f"stack {name} exists already ({display_path(path)}); edit it, or pick another --team/--env")
    existing = _existing_configs(directory)
    cost_center = cost_center or _team_cost_center(team, existing)
    if not cost_center:
        raise UserError(f"--cost-center is required: team {team!r} has no other stack to take it from")

    values = stack_values(team, env, cost_center, existing, region=region, cloud=cloud or f"{team}-private",
                          peering_group=peering_group, runner_cidrs=list(runner_cidrs or []), bucket_prefix=bucket_prefix)
    source = display_path(path)
    try:
        cfg = build_stack_config(values, source=source, stack_name=name)
    except StackConfigError as exc:
        raise UserError(f"the stack {name} would not validate with these options; nothing written", details=list(exc.problems)) from None
    problems = cross_stack_problems({**existing, source: cfg}, only={source})
    if problems:
        raise UserError(f"the stack {name} would collide with another stack; nothing written", details=problems)

    kind = "production: highly available" if values["hybridserve:aws"]["vpc"]["nat_gateways"] == "per_az" else "small and cheap"
    header = (
        f"# Team {team!r}, {env} ({kind}); written by `hybridserve stacks new`. Review the instance types and\n"
        f"# flavors (your cloud's names), then: hybridserve validate --stack {name}; hybridserve plan --stack {name}\n"
    )
    path.write_text(header + yaml.dump({"config": values}, Dumper=_Dumper, sort_keys=False, default_flow_style=False), encoding="utf-8")
    vpc = values["hybridserve:aws"]["vpc"]["cidr"]
    typer.echo(f"wrote {source}  (VPC {vpc}, OpenStack network {values['hybridserve:openstack']['network']['cidr']}, "
               f"bucket {values['hybridserve:storage']['model_bucket']})")
    typer.echo("\nNext steps:")
    for line in (
        f"hybridserve validate --stack {name}",
        f"hybridserve plan --stack {name}",
        f"pulumi stack init {name}          # on the team's backend (PULUMI_BACKEND_URL or pulumi login)",
        f"pulumi config set --secret --stack {name} hybridserve:openstack_password '...'   # only without an application credential in clouds.yaml",
        f"pulumi config set --secret --stack {name} hybridserve:vpn_psk '...'              # optional: otherwise a key per tunnel is generated",
        f"hybridserve doctor --stack {name}",
        f"git add {source} && git commit   # CI previews it on the pull request and deploys it on merge",
    ):
        typer.echo(f"  {line}")
