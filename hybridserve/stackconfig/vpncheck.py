"""VPN check: the two ends of the site-to-site VPN agree, are strong, and the networks are distinct.

Three entry points, each naming the config key of every problem:

- `profile_issues(vpn)`: the `hybridserve:vpn` section alone (run by `VpnConfig.issues`, so by
  `hybridserve validate`, `plan` and `pulumi up`): weak choices (IKEv1, SHA-1, AES-128, DH groups
  below 14 or from RFC 5114, no PFS), values one end cannot express, and the profile rendered for
  AWS and for Neutron translated back and compared.
- `stack_issues(cfg)`: what needs the whole stack: production zone count, the extra peer CIDRs
  against every other network of the stack (the stack-wide overlap check covers the rest).
- `plan_problems(resources)`: the resources a plan registered (`infra.plan.Plan.resources`, or the
  `resources` list of the plan JSON) under the kit's VPN component (`hybridserve:vpn:*`): the
  parameters each AWS tunnel and each Neutron site connection were actually given, compared key by key, plus pre-shared keys that are not
  secret, missing tunnel logging, DPD or MTU.

Importable without Pulumi.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from hybridserve.stackconfig.schema.common import Issue, Loc, net
from hybridserve.stackconfig.schema.vpn import (
    AWS_DPD_ACTIONS,
    AWS_NAMES,
    AWS_PHASE1_DH_GROUPS,
    AWS_PHASE2_DH_GROUPS,
    OPENSTACK_DH_GROUPS,
    OPENSTACK_DPD_ACTIONS,
    OPENSTACK_NAMES,
    STRONG_DH_HINT,
    WEAK_DH_GROUPS,
    VpnConfig,
    aws_tunnel_options,
    openstack_dpd,
    openstack_ike_policy,
    openstack_ipsec_policy,
)

if TYPE_CHECKING:
    from hybridserve.stackconfig.schema.stack import StackConfig

PROD_ENVIRONMENTS = frozenset({"prod", "production"})
PROD_MIN_ZONES = 3
SECRET_MARKER = "[secret]"  # how infra.plan masks a secret value

# The parameters both ends must agree on, by their key in `hybridserve:vpn`.
PARAMS: dict[Loc, str] = {
    ("ike", "version"): "IKE version",
    ("ike", "encryption"): "phase 1 encryption",
    ("ike", "integrity"): "phase 1 integrity/PRF",
    ("ike", "dh_group"): "phase 1 DH group",
    ("ike", "lifetime_seconds"): "phase 1 lifetime",
    ("ipsec", "encryption"): "phase 2 encryption",
    ("ipsec", "integrity"): "phase 2 integrity",
    ("ipsec", "pfs_group"): "phase 2 PFS group",
    ("ipsec", "lifetime_seconds"): "phase 2 lifetime",
    ("dpd_action",): "DPD action",
    ("dpd_timeout_seconds",): "DPD timeout",
}
MISSING = "(not set)"

_AWS_BACK = {v: k for k, v in AWS_NAMES.items()}
_OPENSTACK_BACK = {v: k for k, v in OPENSTACK_NAMES.items()}


def _vkey(loc: Loc) -> str:
    from hybridserve.stackconfig.schema.stack import format_loc

    return format_loc(("vpn", *loc))


# --- weak choices -----------------------------------------------------------------------------------


def weak_reason(loc: Loc, value: Any) -> str | None:
    """Why `value` at `loc` (a PARAMS key) is below the kit's floor, with what to use instead; None if fine."""
    if loc == ("ike", "version") and value == "ikev1":
        return "IKEv1 is weak (aggressive mode, no built-in DoS protection, deprecated by RFC 9395); use ikev2, which both ends support"
    if loc[-1] == "integrity" and value == "sha1":
        return "SHA-1 is weak (practical collisions); use sha256, sha384 or sha512"
    if loc[-1] == "encryption" and isinstance(value, str) and value.startswith("aes-128"):
        return f"{value} is below the kit's minimum of AES-256; use aes-256-gcm-16 (or aes-256 where the cloud's VPNaaS driver lacks GCM)"
    if loc == ("ipsec", "pfs_group") and value is None:
        return f"no perfect forward secrecy: one leaked key would decrypt every past session; set a PFS group ({STRONG_DH_HINT})"
    if loc[-1] in ("dh_group", "pfs_group") and isinstance(value, int):
        if value in WEAK_DH_GROUPS:
            return f"group {value} is weak: {WEAK_DH_GROUPS[value]}; {STRONG_DH_HINT}"
        if value < 14:
            return f"group {value} is weak (below MODP-2048); {STRONG_DH_HINT}"
    return None


# --- each end's view, in neutral names ---------------------------------------------------------------


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _get(opts: Mapping[str, Any], snake: str) -> Any:
    """A value by its snake_case (SDK keyword) or camelCase (wire, plan JSON) name."""
    if snake in opts:
        return opts[snake]
    return opts.get(_camel(snake), MISSING)


def _one(values: Any, back: Mapping[Any, Any] | None = None) -> Any:
    """A single-valued list -> its value (translated back); several values stay a tuple so they never compare equal."""
    if values is MISSING or values is None:
        return MISSING
    if not isinstance(values, (list, tuple)):
        values = [values]
    out = tuple(back.get(v, f"{v} (unknown)") if back is not None else v for v in values)
    return out[0] if len(out) == 1 else out


def _int(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_int(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def aws_view(opts: Mapping[str, Any], tunnel: int) -> dict[Loc, Any]:
    """What AWS tunnel `tunnel` was given, as neutral values by PARAMS key."""
    t = f"tunnel{tunnel}_"
    dh1 = _one(_int(_get(opts, f"{t}phase1_dh_group_numbers")))
    dh2 = _one(_int(_get(opts, f"{t}phase2_dh_group_numbers")))
    return {
        ("ike", "version"): _one(_get(opts, f"{t}ike_versions"), _AWS_BACK),
        ("ike", "encryption"): _one(_get(opts, f"{t}phase1_encryption_algorithms"), _AWS_BACK),
        ("ike", "integrity"): _one(_get(opts, f"{t}phase1_integrity_algorithms"), _AWS_BACK),
        ("ike", "dh_group"): dh1,
        ("ike", "lifetime_seconds"): _int(_get(opts, f"{t}phase1_lifetime_seconds")),
        ("ipsec", "encryption"): _one(_get(opts, f"{t}phase2_encryption_algorithms"), _AWS_BACK),
        ("ipsec", "integrity"): _one(_get(opts, f"{t}phase2_integrity_algorithms"), _AWS_BACK),
        ("ipsec", "pfs_group"): dh2,
        ("ipsec", "lifetime_seconds"): _int(_get(opts, f"{t}phase2_lifetime_seconds")),
        ("dpd_action",): _get(opts, f"{t}dpd_timeout_action"),
        ("dpd_timeout_seconds",): _int(_get(opts, f"{t}dpd_timeout_seconds")),
    }


def _group(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("group") and value[5:].isdigit():
        return int(value[5:])
    return MISSING if value is MISSING else f"{value} (unknown)"


def _lifetime(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], Mapping):
        units = value[0].get("units", "seconds")
        seconds = _int(value[0].get("value"))
        return seconds if units == "seconds" else f"{seconds} {units}"
    return MISSING


def openstack_view(ike: Mapping[str, Any], ipsec: Mapping[str, Any], dpd: Mapping[str, Any] | None) -> dict[Loc, Any]:
    """What Neutron was given (IKE policy, IPsec policy, a site connection's DPD), as neutral values."""
    dpd = dpd or {}
    return {
        ("ike", "version"): _one(_get(ike, "ike_version"), _OPENSTACK_BACK),
        ("ike", "encryption"): _one(_get(ike, "encryption_algorithm"), _OPENSTACK_BACK),
        ("ike", "integrity"): _one(_get(ike, "auth_algorithm"), _OPENSTACK_BACK),
        ("ike", "dh_group"): _group(_get(ike, "pfs")),
        ("ike", "lifetime_seconds"): _lifetime(_get(ike, "lifetimes")),
        ("ipsec", "encryption"): _one(_get(ipsec, "encryption_algorithm"), _OPENSTACK_BACK),
        ("ipsec", "integrity"): _one(_get(ipsec, "auth_algorithm"), _OPENSTACK_BACK),
        ("ipsec", "pfs_group"): _group(_get(ipsec, "pfs")),
        ("ipsec", "lifetime_seconds"): _lifetime(_get(ipsec, "lifetimes")),
        ("dpd_action",): dpd.get("action", MISSING),
        ("dpd_timeout_seconds",): _int(dpd.get("timeout", MISSING)),
    }


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "several: " + ", ".join(repr(v) for v in value)
    return value if value == MISSING else repr(value)


def differences(a: Mapping[Loc, Any], b: Mapping[Loc, Any]) -> Iterator[tuple[Loc, Any, Any]]:
    for loc in PARAMS:
        if a.get(loc, MISSING) != b.get(loc, MISSING):
            yield loc, a.get(loc, MISSING), b.get(loc, MISSING)


# --- the config section ------------------------------------------------------------------------------


def _config_values(vpn: VpnConfig) -> dict[Loc, Any]:
    return {
        ("ike", "version"): vpn.ike.version,
        ("ike", "encryption"): vpn.ike.encryption,
        ("ike", "integrity"): vpn.ike.integrity,
        ("ike", "dh_group"): vpn.ike.dh_group,
        ("ike", "lifetime_seconds"): vpn.ike.lifetime_seconds,
        ("ipsec", "encryption"): vpn.ipsec.encryption,
        ("ipsec", "integrity"): vpn.ipsec.integrity,
        ("ipsec", "pfs_group"): vpn.ipsec.pfs_group,
        ("ipsec", "lifetime_seconds"): vpn.ipsec.lifetime_seconds,
        ("dpd_action",): vpn.dpd_action,
        ("dpd_timeout_seconds",): vpn.dpd_timeout_seconds,
    }


_SUPPORT: dict[Loc, tuple[frozenset, frozenset]] = {
    ("ike", "dh_group"): (AWS_PHASE1_DH_GROUPS, OPENSTACK_DH_GROUPS),
    ("ipsec", "pfs_group"): (AWS_PHASE2_DH_GROUPS, OPENSTACK_DH_GROUPS),
    ("dpd_action",): (AWS_DPD_ACTIONS, OPENSTACK_DPD_ACTIONS),
}


def profile_issues(vpn: VpnConfig) -> Iterator[Issue]:
    """Issues of the `hybridserve:vpn` section, locations relative to it."""
    values = _config_values(vpn)
    reported: set[Loc] = set()
    for loc, value in values.items():
        reason = weak_reason(loc, value)
        if reason:
            reported.add(loc)
            yield Issue(loc, f"{_show(value)} is not allowed: {reason}")
    for loc, (aws, openstack) in _SUPPORT.items():
        value = values[loc]
        if loc in reported:
            continue
        missing = [end for end, offered in (("AWS", aws), ("Neutron VPNaaS", openstack)) if value not in offered]
        if missing:
            reported.add(loc)
            offered = sorted(aws & openstack, key=str)
            yield Issue(loc, f"{_show(value)} cannot be configured on {' and '.join(missing)}, so the two ends would disagree; both ends offer: {', '.join(map(str, offered))}")
    # Render the profile for each end, translate both back and compare: the tables must round-trip.
    os_view = openstack_view(openstack_ike_policy(vpn), openstack_ipsec_policy(vpn), openstack_dpd(vpn))
    for tunnel in (1, 2):
        aws = aws_view(aws_tunnel_options(vpn, tunnel), tunnel)
        for loc, a, o in differences(aws, os_view):
            if loc not in reported:
                reported.add(loc)
                yield Issue(loc, f"the two ends would be given different {PARAMS[loc]}s: AWS tunnel {tunnel} {_show(a)}, Neutron {_show(o)} (config {_show(values[loc])})")
    if vpn.ipsec.lifetime_seconds > vpn.ike.lifetime_seconds:
        yield Issue(("ipsec", "lifetime_seconds"), f"{vpn.ipsec.lifetime_seconds} is longer than ike.lifetime_seconds ({vpn.ike.lifetime_seconds}); an IPsec SA must not outlive its IKE SA")
    if vpn.dpd_interval_seconds >= vpn.dpd_timeout_seconds:
        yield Issue(("dpd_interval_seconds",), f"{vpn.dpd_interval_seconds} is not shorter than dpd_timeout_seconds ({vpn.dpd_timeout_seconds}); Neutron needs interval < timeout")
    limit = vpn.tunnel_mtu_for_profile()
    if vpn.tunnel_mtu is not None and vpn.tunnel_mtu > limit:
        yield Issue(("tunnel_mtu",), f"{vpn.tunnel_mtu} does not fit a 1500-byte path after ESP with {vpn.ipsec.encryption}/{vpn.ipsec.integrity}; at most {limit}")
    if vpn.gateway == "transit" and vpn.routing == "propagation":
        yield Issue(("routing",), "'propagation' works only with gateway: vgw; with a transit gateway the kit adds static routes (set routing: static)")
    if vpn.extra_aws_cidrs and vpn.gateway != "transit":
        yield Issue(("extra_aws_cidrs",), f"{vpn.extra_aws_cidrs} needs gateway: transit; a virtual private gateway reaches only its own VPC (no transitive routing)")
    extras = [(("extra_openstack_cidrs", i), c) for i, c in enumerate(vpn.extra_openstack_cidrs)]
    extras += [(("extra_aws_cidrs", i), c) for i, c in enumerate(vpn.extra_aws_cidrs)]
    for i, (loc, cidr) in enumerate(extras):
        for other_loc, other in extras[:i]:
            if net(cidr).overlaps(net(other)):
                yield Issue(loc, f"{cidr} overlaps {_vkey(other_loc)} ({other}); peer networks must be distinct")


# --- the whole stack ---------------------------------------------------------------------------------


def stack_issues(cfg: StackConfig) -> Iterator[Issue]:
    """Network/VPN issues that need the whole stack; locations from the root. Hook: `StackConfig.issues`."""
    vpc = cfg.aws.vpc
    if cfg.environment in PROD_ENVIRONMENTS and vpc.zone_count() < PROD_MIN_ZONES:
        loc: Loc = ("aws", "vpc", "availability_zones" if vpc.availability_zones else "az_count")
        yield Issue(loc, f"{cfg.environment} spans {vpc.zone_count()} availability zones; production stacks need at least {PROD_MIN_ZONES} (one zone lost must not take the stack down)")
    known = cfg.all_networks()
    covered = {loc for loc, _ in known}
    extras = [(("vpn", "extra_openstack_cidrs", i), c) for i, c in enumerate(cfg.vpn.extra_openstack_cidrs)]
    extras += [(("vpn", "extra_aws_cidrs", i), c) for i, c in enumerate(cfg.vpn.extra_aws_cidrs)]
    from hybridserve.stackconfig.schema.stack import format_loc

    for loc, cidr in extras:
        if loc in covered:
            continue  # the stack-wide overlap check already compares it
        for other_loc, other in known:
            if net(cidr).overlaps(net(other)):
                yield Issue(loc, f"{cidr} overlaps {format_loc(other_loc)} ({other}); every network of a stack must be distinct")


# --- a plan --------------------------------------------------------------------------------------------


def _field(r: Any, name: str) -> Any:
    return r[name] if isinstance(r, Mapping) else getattr(r, name)


VPN_COMPONENT = "hybridserve:vpn:"  # type token prefix of the kit's VPN component (infra/components/vpn.py)


def _in_vpn_component(urn: str) -> bool:
    """URN: urn:pulumi:<stack>::<project>::<parent types joined by $>$<type>::<name>."""
    types = urn.split("::")[2] if urn.count("::") >= 3 else ""
    return any(t.startswith(VPN_COMPONENT) for t in types.split("$"))


def _in_edge_links(urn: str) -> bool:
    types = urn.split("::")[2] if urn.count("::") >= 3 else ""
    return EDGE_LINKS in types.split("$")


EDGE_LINKS = "hybridserve:vpn:EdgeSiteLinks"  # infra/components/edge_links.py


def plan_problems(resources: Iterable[Any]) -> list[str]:
    """Problems of the VPN the kit's component registered in a plan; [] when the plan has none."""
    by_type: dict[str, list[Any]] = {}
    for r in resources:
        if _in_vpn_component(_field(r, "urn")):
            by_type.setdefault(_field(r, "type"), []).append(r)
    connections = by_type.get("aws:ec2/vpnConnection:VpnConnection", [])
    ike = by_type.get("openstack:vpnaas/ikePolicy:IkePolicy", [])
    ipsec = by_type.get("openstack:vpnaas/ipSecPolicy:IpSecPolicy", [])
    sites = by_type.get("openstack:vpnaas/siteConnection:SiteConnection", [])
    if not (connections or sites):
        return []
    problems: list[str] = []
    urn = lambda r: _field(r, "urn")  # noqa: E731
    inputs = lambda r: _field(r, "inputs") or {}  # noqa: E731
    # The hubs' link: one connection and two site connections; the edge sites' links (EdgeSiteLinks) come on top.
    hub_connections = [r for r in connections if not _in_edge_links(urn(r))]
    hub_sites = [r for r in sites if not _in_edge_links(urn(r))]
    if len(hub_connections) != 1 or len(ike) != 1 or len(ipsec) != 1 or len(hub_sites) != 2:
        connections_n, sites_n = len(hub_connections), len(hub_sites)
        problems.append(
            f"the VPN needs 1 AWS VPN connection, 1 IKE policy, 1 IPsec policy and 2 site connections (one per tunnel); "
            f"the plan has {connections_n}, {len(ike)}, {len(ipsec)} and {sites_n}"
        )
    ids = {urn(r): r for r in [*ike, *ipsec]}
    for conn in connections:
        c = inputs(conn)
        for n in (1, 2):
            view = aws_view(c, n)
            for loc, value in view.items():
                reason = weak_reason(loc, value)
                if reason or isinstance(value, tuple) or value == MISSING:
                    why = reason or ("more than one value is offered; offer exactly the profile's" if isinstance(value, tuple) else "not set, so AWS would offer its defaults (IKEv1, SHA-1, group 2 included)")
                    problems.append(f"{_vkey(loc)}: AWS tunnel {n} ({urn(conn)}) has {_show(value)}: {why}")
            if c.get(f"tunnel{n}PresharedKey") != SECRET_MARKER:
                problems.append(f"{urn(conn)}: tunnel{n}PresharedKey is not a secret (or not set); pass the generated key, which stays secret")
            log = (c.get(f"tunnel{n}LogOptions") or {}).get("cloudwatchLogOptions") or {}
            if log.get("logEnabled") is not True or not log.get("logGroupArn"):
                problems.append(f"{urn(conn)}: tunnel {n} logging is off; set tunnel{n}LogOptions.cloudwatchLogOptions (logEnabled, logGroupArn)")
            for site in sites:
                s = inputs(site)
                pol_ike = inputs(ids.get(s.get("ikepolicyId"), ike[0] if ike else {}))
                pol_ipsec = inputs(ids.get(s.get("ipsecpolicyId"), ipsec[0] if ipsec else {}))
                dpds = s.get("dpds") or [{}]
                os_view = openstack_view(pol_ike, pol_ipsec, dpds[0])
                for loc, a, o in differences(view, os_view):
                    problems.append(f"{_vkey(loc)}: the ends disagree on the {PARAMS[loc]}: AWS tunnel {n} ({urn(conn)}) has {_show(a)}, OpenStack ({urn(site)}) has {_show(o)}")
    for site in sites:
        s = inputs(site)
        if s.get("psk") != SECRET_MARKER:
            problems.append(f"{urn(site)}: psk is not a secret (or not set); pass the generated key as a secret Output")
        if not s.get("dpds"):
            problems.append(f"{urn(site)}: no dead-peer detection (dpds); a dead tunnel would not be restarted")
        if not s.get("mtu"):
            problems.append(f"{urn(site)}: no mtu; set the tunnel MTU the profile allows (hybridserve:vpn.tunnel_mtu)")
    peers = [inputs(s).get("peerAddress") for s in hub_sites]
    if len(hub_sites) == 2 and len(set(peers)) != 2:
        problems.append(f"the two site connections must point at the two different AWS tunnel addresses; they have {peers}")
    for r in ike:
        for loc, value in openstack_view(inputs(r), {}, None).items():
            if loc[0] == "ike" and (reason := weak_reason(loc, value)):
                problems.append(f"{_vkey(loc)}: the IKE policy ({urn(r)}) has {_show(value)}: {reason}")
    return list(dict.fromkeys(problems))
