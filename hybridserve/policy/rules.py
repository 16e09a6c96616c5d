"""The kit's infrastructure policies as plain functions over resources (type, name, urn, inputs).

One implementation, two runners:
- the CrossGuard pack in `policy/` (`pulumi preview|up --policy-pack policy`) wraps each policy in
  `pulumi_policy`'s validation policies; there, reading a value that is unknown during preview raises and
  the SDK skips that policy for that resource until the value is known;
- `hybridserve plan` / `hybridserve policy check` run them offline on the mock-engine resources.

Only the standard library here: the pack runs in its own virtualenv (pulumi-policy pins protobuf 5, the
program's environment has 6) and imports this file from the checkout.

Each violation says what is wrong and how to fix it. Policies are mandatory unless configured advisory
(per policy, and per stack with `--policy-pack-config policy/config/<stack>.json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hybridserve import netspace
from hybridserve.netspace import internet_exposure

MANDATORY = "mandatory"
ADVISORY = "advisory"
DISABLED = "disabled"

REQUIRED_TAGS = ("team", "environment", "cost-center")
# Ports whose openness to the Internet is an incident: SSH, RDP, Kubernetes API servers (443 on EKS's
# security groups, 6443 on Magnum's masters), the kubelet.
ADMIN_PORTS = {**netspace.ADMIN_PORTS, 443: "the Kubernetes API (EKS)"}
# More public addresses than a /16 (IPv4) or a /48 (IPv6) behind an admin port is "the Internet", however
# the CIDRs are spelt; `validate` judges the stack's settings with the same definition (hybridserve/netspace.py).


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    provider_urn: str = ""  # which provider (so: which cluster or account) manages it


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str
    urn: str
    message: str


@dataclass(frozen=True)
class Policy:
    name: str
    group: str
    description: str
    # Exactly one of: per resource of `types`, or over the whole stack.
    types: tuple[str, ...] = ()
    check: Callable[[Resource], Iterator[str]] | None = None
    stack_check: Callable[[list[Resource]], Iterator[tuple[Resource, str]]] | None = None
    enforcement: str = MANDATORY


# --- helpers -----------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _listify(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _port_range(low: Any, high: Any, protocol: Any) -> tuple[int, int]:
    if str(protocol) in ("-1", "all"):
        return 0, 65535
    try:
        low_i = int(low) if low is not None else 0
        high_i = int(high) if high is not None else 65535
    except (TypeError, ValueError):
        return 0, 0
    if low_i < 0 or high_i < 0:  # -1: every port (icmp type/code for ICMP)
        return (0, 65535) if str(protocol) not in ("icmp", "1", "icmpv6", "58") else (0, -1)
    return low_i, high_i


def _open_admin_ports(rules: list[tuple[str, int, int, list[str]]]) -> Iterator[str]:
    """rules: (protocol, low, high, cidrs). A message per admin port the union of the rules opens widely."""
    for port, what in ADMIN_PORTS.items():
        cidrs = [c for proto, low, high, cs in rules if proto in ("tcp", "6", "-1", "all", "") and low <= port <= high for c in cs]
        exposure = internet_exposure(cidrs)
        if exposure is not None:
            yield (
                f"port {port} ({what}) is open to {exposure} ({', '.join(sorted(set(cidrs)))}); "
                "allow it only from private ranges or a few public addresses (e.g. a bastion's /32)"
            )


# --- storage -----------------------------------------------------------------------------------------

S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")


def _bucket_names(resources: list[Resource]) -> dict[str, Resource]:
    return {str(r.props.get("bucket") or r.name): r for r in resources if r.type in S3_BUCKETS}


def _by_bucket(resources: list[Resource], type_prefix: str) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for r in resources:
        if r.type.startswith(type_prefix):
            out.setdefault(str(r.props.get("bucket")), []).append(r)
    return out


def bucket_encryption(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    configs = _by_bucket(resources, "aws:s3/bucketServerSideEncryptionConfiguration")
    log_targets = {str(r.props.get("targetBucket")) for r in resources if r.type.startswith("aws:s3/bucketLogging")}
    for name, bucket in _bucket_names(resources).items():
        rules = [rule for c in configs.get(name, []) for rule in _listify(c.props.get("rules"))]
        algorithms = {str((rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")) for rule in rules if isinstance(rule, Mapping)}
        if name in log_targets:
            # Server access log destinations: AWS documents SSE-S3 only; with SSE-KMS default encryption
            # the logging service (granted nothing on a key) delivers no logs.
            if algorithms != {"AES256"}:
                found = ", ".join(sorted(algorithms - {"None"})) or "no default encryption"
                yield bucket, f"log bucket {name} has {found}; access-log destinations take SSE-S3 (sseAlgorithm AES256) only"
        elif not algorithms - {"None"}:
            yield bucket, f"bucket {name} has no default encryption; add an aws.s3.BucketServerSideEncryptionConfiguration (SSE-KMS with the stack's key)"
        elif not algorithms & {"aws:kms", "aws:kms:dsse"}:
            yield bucket, f"bucket {name} holds model data but encrypts with {', '.join(sorted(algorithms))}; use SSE-KMS (sseAlgorithm aws:kms with the stack's key)"


def bucket_versioning(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    versioning = _by_bucket(resources, "aws:s3/bucketVersioning")
    for name, bucket in _bucket_names(resources).items():
        statuses = {str((v.props.get("versioningConfiguration") or {}).get("status")) for v in versioning.get(name, [])}
        legacy = (bucket.props.get("versioning") or {}).get("enabled") is True
        if "Enabled" not in statuses and not legacy:
            yield bucket, f"bucket {name} is not versioned; add an aws.s3.BucketVersioning with status Enabled (an overwrite or delete must be recoverable)"


def bucket_public_access(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    blocks = _by_bucket(resources, "aws:s3/bucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for name, bucket in _bucket_names(resources).items():
        found = blocks.get(name, [])
        missing = [f for f in flags if not any(b.props.get(f) is True for b in found)]
        if missing:
            yield bucket, f"bucket {name}: public access not blocked ({', '.join(missing)} not true); add an aws.s3.BucketPublicAccessBlock with all four flags"


def _denies_insecure_transport(policy: Any) -> bool:
    doc = _json(policy)
    for st in _listify((doc or {}).get("Statement") if isinstance(doc, Mapping) else None):
        if not isinstance(st, Mapping) or st.get("Effect") != "Deny":
            continue
        cond = st.get("Condition") or {}
        for op in ("Bool", "BoolIfExists"):
            value = (cond.get(op) or {}).get("aws:SecureTransport")
            if str(value).lower() in ("false", "['false']"):
                return True
    return False


def bucket_tls_only(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    policies = _by_bucket(resources, "aws:s3/bucketPolicy")
    for name, bucket in _bucket_names(resources).items():
        if not any(_denies_insecure_transport(p.props.get("policy")) for p in policies.get(name, [])):
            yield bucket, f"bucket {name} accepts plain HTTP; add a bucket policy statement denying s3:* when aws:SecureTransport is false"


def kms_rotation(r: Resource) -> Iterator[str]:
    if r.props.get("enableKeyRotation") is not True and str(r.props.get("customerMasterKeySpec") or r.props.get("keySpec") or "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT":
        yield "the key does not rotate; set enable_key_rotation=True"


def ebs_encrypted(r: Resource) -> Iterator[str]:
    if r.type == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, bdm in enumerate(_listify(r.props.get("blockDeviceMappings"))):
            ebs = (bdm or {}).get("ebs") if isinstance(bdm, Mapping) else None
            if isinstance(ebs, Mapping) and str(ebs.get("encrypted")).lower() != "true":
                yield f"blockDeviceMappings[{i}] ({bdm.get('deviceName')}): the volume is not encrypted; set ebs.encrypted='true' with the stack's KMS key"
    elif r.type == "aws:ebs/volume:Volume" and r.props.get("encrypted") is not True:
        yield "the volume is not encrypted; set encrypted=True with the stack's KMS key"
    elif r.type == "aws:ec2/instance:Instance":
        root = r.props.get("rootBlockDevice") or {}
        if isinstance(root, Mapping) and root.get("encrypted") is not True:
            yield "the root volume is not encrypted; set root_block_device.encrypted=True"
    elif r.type == "aws:ebs/encryptionByDefault:EncryptionByDefault" and r.props.get("enabled") is False:
        yield "turns EBS encryption by default off; leave it enabled"


# --- network -----------------------------------------------------------------------------------------


def aws_security_group(r: Resource) -> Iterator[str]:
    rules = []
    for rule in _listify(r.props.get("ingress")):
        if not isinstance(rule, Mapping):
            continue
        proto = str(rule.get("protocol", "")).lower()
        low, high = _port_range(rule.get("fromPort"), rule.get("toPort"), proto)
        rules.append((proto, low, high, [*_listify(rule.get("cidrBlocks")), *_listify(rule.get("ipv6CidrBlocks"))]))
    yield from _open_admin_ports(rules)


def security_group_rules(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    """Stand-alone rules, judged together per security group (several rules can add up to the Internet)."""
    groups: dict[str, list[tuple[Resource, tuple[str, int, int, list[str]]]]] = {}
    for r in resources:
        p = r.props
        if r.type == "openstack:networking/secGroupRule:SecGroupRule":
            if str(p.get("direction")) != "ingress":
                continue
            proto = str(p.get("protocol") or "-1").lower()
            low, high = _port_range(p.get("portRangeMin"), p.get("portRangeMax"), proto)
            cidr = p.get("remoteIpPrefix") or ("::/0" if str(p.get("ethertype")) == "IPv6" else "0.0.0.0/0")
            if p.get("remoteGroupId"):
                continue  # a group reference admits members of that group, not addresses
            key = f"openstack:{p.get('securityGroupId')}"
        elif r.type in ("aws:ec2/securityGroupRule:SecurityGroupRule",):
            if str(p.get("type")) != "ingress":
                continue
            proto = str(p.get("protocol", "")).lower()
            low, high = _port_range(p.get("fromPort"), p.get("toPort"), proto)
            cidr = [*_listify(p.get("cidrBlocks")), *_listify(p.get("ipv6CidrBlocks"))]
            key = f"aws:{p.get('securityGroupId')}"
        elif r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
            proto = str(p.get("ipProtocol", "")).lower()
            low, high = _port_range(p.get("fromPort"), p.get("toPort"), proto)
            cidr = [c for c in (p.get("cidrIpv4"), p.get("cidrIpv6")) if c]
            key = f"aws:{p.get('securityGroupId')}"
        else:
            continue
        groups.setdefault(key, []).append((r, (proto, low, high, _listify(cidr))))
    for key, members in groups.items():
        for message in _open_admin_ports([rule for _, rule in members]):
            yield members[0][0], f"security group {key.split(':', 1)[1]}: {message}"


def eks_api_access(r: Resource) -> Iterator[str]:
    vpc = r.props.get("vpcConfig") or {}
    if not isinstance(vpc, Mapping) or vpc.get("endpointPublicAccess") is False:
        return
    # EKS's default for a public endpoint is 0.0.0.0/0 when no CIDRs are given.
    cidrs = _listify(vpc.get("publicAccessCidrs")) or ["0.0.0.0/0"]
    exposure = internet_exposure(cidrs)
    if exposure is not None:
        yield (
            f"the public API endpoint admits {exposure} ({', '.join(cidrs)}); list the runners' egress CIDRs in "
            "hybridserve:aws.eks.public_access_cidrs, or use a private endpoint (deploy_access.via: private_network)"
        )


# IKEv2, AES-256, SHA-256 or stronger, DH group 14 or stronger, PFS: the kit's minimum VPN profile.
# MODP 2048+ and ECP groups; RFC 5114's 22-23 are out (RFC 8247 section 2.4: SHOULD NOT).
STRONG_DH = {14, 15, 16, 17, 18, 19, 20, 21, 24}


def _dh_ok(groups: Iterable[Any]) -> bool:
    values = [int(g) for g in groups if str(g).lstrip("-").isdigit()]
    return bool(values) and all(v in STRONG_DH for v in values)


def aws_vpn_profile(r: Resource) -> Iterator[str]:
    p = r.props
    for t in (1, 2):
        pre = f"tunnel{t}"
        ike = _listify(p.get(f"{pre}IkeVersions"))
        if ike != ["ikev2"]:
            yield f"{pre}: IKE versions {ike or 'default (ikev1, ikev2)'}; set {pre}_ike_versions=['ikev2']"
        for phase in (1, 2):
            enc = [str(e) for e in _listify(p.get(f"{pre}Phase{phase}EncryptionAlgorithms"))]
            if not enc or any(not e.startswith("AES256") for e in enc):
                yield f"{pre} phase {phase}: encryption {enc or 'default (includes AES128)'}; allow only AES256 / AES256-GCM-16"
            integ = [str(e) for e in _listify(p.get(f"{pre}Phase{phase}IntegrityAlgorithms"))]
            gcm_only = enc and all("GCM" in e for e in enc)
            if not gcm_only and (not integ or any(e == "SHA1" for e in integ)):
                yield f"{pre} phase {phase}: integrity {integ or 'default (includes SHA1)'}; allow only SHA2-256 or stronger"
            dh = _listify(p.get(f"{pre}Phase{phase}DhGroupNumbers"))
            if not _dh_ok(dh):
                what = "PFS group" if phase == 2 else "DH group"
                yield f"{pre} phase {phase}: {what}s {dh or 'default (includes 2 and 5)'}; allow only groups 14-21 or 24"


def openstack_vpn_profile(r: Resource) -> Iterator[str]:
    p = r.props
    if r.type == "openstack:vpnaas/ikePolicy:IkePolicy" and str(p.get("ikeVersion", "v1")) != "v2":
        yield f"IKE version {p.get('ikeVersion', 'v1 (default)')}; set ike_version='v2'"
    enc = str(p.get("encryptionAlgorithm") or "aes-128 (default)")
    if not enc.startswith("aes-256"):
        yield f"encryption {enc}; use aes-256 or aes-256-gcm-16"
    auth = str(p.get("authAlgorithm") or "sha1 (default)")
    if auth not in ("sha256", "sha384", "sha512"):
        yield f"integrity {auth}; use sha256 or stronger"
    pfs = str(p.get("pfs") or "group5 (default)")
    digits = pfs.removeprefix("group")
    if not (digits.isdigit() and int(digits) in STRONG_DH):
        yield f"PFS {pfs}; use group14 or stronger"


# --- compute -----------------------------------------------------------------------------------------

GPU_FAMILIES = re.compile(r"^(p\d|g\d|gr\d|inf\d|trn\d|dl\d)", re.IGNORECASE)
NVIDIA_AMIS = {"AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA"}


def gpu_pool(r: Resource) -> Iterator[str]:
    types = [str(t) for t in _listify(r.props.get("instanceTypes"))]
    if not any(GPU_FAMILIES.match(t) for t in types):
        return
    taints = [t for t in _listify(r.props.get("taints")) if isinstance(t, Mapping)]
    if not any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NO_SCHEDULE" for t in taints):
        yield f"GPU node group ({', '.join(types)}) is not tainted; add the taint nvidia.com/gpu=true:NoSchedule so only GPU workloads land there"
    ami = str(r.props.get("amiType") or "")
    if ami not in NVIDIA_AMIS and not r.props.get("releaseVersion") and ami != "CUSTOM":
        yield f"GPU node group uses AMI type {ami or 'default'}; use an NVIDIA AMI ({', '.join(sorted(NVIDIA_AMIS))})"


def imdsv2(r: Resource) -> Iterator[str]:
    meta = r.props.get("metadataOptions") or {}
    if not isinstance(meta, Mapping) or meta.get("httpTokens") != "required":
        yield "instance metadata accepts IMDSv1; set metadata_options.http_tokens='required'"


# --- serving -----------------------------------------------------------------------------------------


def _triton_containers(r: Resource) -> list[Mapping[str, Any]]:
    spec = ((r.props.get("spec") or {}).get("template") or {}).get("spec") or {}
    # Init containers too: the candidate gate Job runs Triton as a native sidecar (restartPolicy: Always).
    containers = [*_listify(spec.get("containers")), *_listify(spec.get("initContainers"))]
    return [c for c in containers if isinstance(c, Mapping) and "tritonserver" in str(c.get("image", "")) and "sdk" not in str(c.get("image", ""))]


def triton_pods(r: Resource) -> Iterator[str]:
    containers = _triton_containers(r)
    if not containers:
        return
    pod = (((r.props.get("spec") or {}).get("template") or {}).get("spec") or {})
    pod_sc = pod.get("securityContext") or {}
    for c in containers:
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") is True or pod_sc.get("runAsNonRoot") is True) or int(sc.get("runAsUser", pod_sc.get("runAsUser", 1)) or 0) == 0:
            yield f"container {c.get('name')}: may run as root; set securityContext.runAsNonRoot=true and a non-zero runAsUser"
        missing = [p for p in ("readinessProbe", "livenessProbe") if not c.get(p)]
        if missing:
            yield f"container {c.get('name')}: no {' and no '.join(missing)}; traffic and restarts need them"
        args = " ".join(str(a) for a in [*_listify(c.get("command")), *_listify(c.get("args"))])
        if "--model-control-mode=explicit" not in args:
            yield f"container {c.get('name')}: model control is not explicit; pass --model-control-mode=explicit (models load only when published)"
        limits = ((c.get("resources") or {}).get("limits") or {})
        if "nvidia.com/gpu" not in limits and pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true":
            yield f"container {c.get('name')}: runs on GPU nodes without a nvidia.com/gpu limit"


def triton_pdb(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    pdbs = [r for r in resources if r.type == "kubernetes:policy/v1:PodDisruptionBudget"]
    for r in resources:
        if r.type != "kubernetes:apps/v1:Deployment" or not _triton_containers(r):
            continue
        ns = (r.props.get("metadata") or {}).get("namespace", "default")
        labels = (((r.props.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        covered = False
        for pdb in pdbs:
            same_provider = pdb.provider_urn == r.provider_urn  # the Kubernetes provider tells the clusters apart
            match = (((pdb.props.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
            if same_provider and (pdb.props.get("metadata") or {}).get("namespace", "default") == ns and match and all(labels.get(k) == v for k, v in match.items()):
                covered = True
        if not covered:
            yield r, f"no PodDisruptionBudget selects the Triton pods in namespace {ns}; add one (maxUnavailable 1) so node drains keep serving"


# --- hygiene -----------------------------------------------------------------------------------------

def required_tags(resources: list[Resource]) -> Iterator[tuple[Resource, str]]:
    for r in resources:
        if r.type == "pulumi:providers:aws":
            tags = ((_json(r.props.get("defaultTags")) or {}).get("tags")) or {}
            missing = [t for t in REQUIRED_TAGS if not str(tags.get(t, "")).strip()]
            if missing:
                yield r, f"the AWS provider's default tags lack {', '.join(missing)}; every taggable resource inherits them (default_tags)"
        elif r.type.startswith("aws:") and isinstance(r.props.get("tags"), Mapping):
            tags = r.props["tags"]
            emptied = [t for t in REQUIRED_TAGS if t in tags and not str(tags[t]).strip()]
            if emptied:
                yield r, f"tags set {', '.join(emptied)} to an empty value, overriding the provider's default tags; remove them"
        if r.type == "aws:ec2/launchTemplate:LaunchTemplate":
            specs = {str(s.get("resourceType")): s.get("tags") or {} for s in _listify(r.props.get("tagSpecifications")) if isinstance(s, Mapping)}
            for kind in ("instance", "volume"):
                missing = [t for t in REQUIRED_TAGS if t not in specs.get(kind, {})]
                if missing:
                    yield r, f"instances' {kind}s started from it lack tags {', '.join(missing)} (provider default tags do not reach them); add tag_specifications for {kind}"


SECRET_NAMES = re.compile(r"(password|passphrase|secret|presharedkey|psk|privatekey|token|apikey|accesskey)$", re.IGNORECASE)
SECRET_VALUES = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "a GitHub token"),
    (re.compile(r"\bpul-[0-9a-f]{40}\b"), "a Pulumi access token"),
)
MASK = "[secret]"


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def plain_secrets(r: Resource, *, masked: bool) -> Iterator[str]:
    """A secret-looking value in a plain input. `masked`: secret inputs arrive masked (the offline plan),
    so any unmasked value under a secret-sounding name is plain text. CrossGuard hands policies secrets
    unwrapped, so there only the value patterns can tell."""
    for path, value in _walk(r.props, ""):
        if not isinstance(value, str) or value == MASK or not value:
            continue
        leaf = re.split(r"[.\[]", path)[-1]
        if masked and SECRET_NAMES.search(leaf) and not value.startswith(("arn:", "$", "{")) and len(value) >= 8:
            yield f"{path} holds a plain value under a secret's name; pass it as a Pulumi secret (pulumi.Output.secret / config --secret)"
            continue
        for pattern, what in SECRET_VALUES:
            if pattern.search(value):
                yield f"{path} contains {what} in plain text; pass it as a Pulumi secret"
                break


# --- the pack ----------------------------------------------------------------------------------------

POLICIES: tuple[Policy, ...] = (
    Policy("s3-bucket-encrypted", "storage", "S3 buckets are encrypted at rest: SSE-KMS for model data, SSE-S3 allowed for access-log destinations", stack_check=bucket_encryption),
    Policy("s3-bucket-versioned", "storage", "S3 buckets are versioned", stack_check=bucket_versioning),
    Policy("s3-public-access-blocked", "storage", "S3 buckets block every form of public access", stack_check=bucket_public_access),
    Policy("s3-tls-only", "storage", "S3 bucket policies deny requests without TLS", stack_check=bucket_tls_only),
    Policy("kms-key-rotation", "storage", "symmetric KMS keys rotate", types=("aws:kms/key:Key",), check=kms_rotation),
    Policy("ebs-encrypted", "storage", "EBS volumes (incl. launch templates' block devices) are encrypted",
           types=("aws:ec2/launchTemplate:LaunchTemplate", "aws:ebs/volume:Volume", "aws:ec2/instance:Instance", "aws:ebs/encryptionByDefault:EncryptionByDefault"), check=ebs_encrypted),
    Policy("no-admin-port-from-internet", "network", "no security group opens SSH, RDP, a Kubernetes API or the kubelet to the Internet (judged by the addresses the rules cover)",
           types=("aws:ec2/securityGroup:SecurityGroup",), check=aws_security_group),
    Policy("no-admin-port-from-internet-rules", "network", "stand-alone security group rules, judged together per group, open no admin port to the Internet", stack_check=security_group_rules),
    Policy("eks-api-not-public", "network", "the EKS public API endpoint admits only listed CIDRs", types=("aws:eks/cluster:Cluster",), check=eks_api_access),
    Policy("vpn-strong-crypto", "network", "VPN tunnels: IKEv2, AES-256, SHA-256+, DH group 14+, PFS",
           types=("aws:ec2/vpnConnection:VpnConnection",), check=aws_vpn_profile),
    Policy("vpn-strong-crypto-openstack", "network", "OpenStack VPNaaS policies: IKEv2, AES-256, SHA-256+, PFS group 14+",
           types=("openstack:vpnaas/ikePolicy:IkePolicy", "openstack:vpnaas/ipSecPolicy:IpSecPolicy"), check=openstack_vpn_profile),
    Policy("gpu-pool-tainted-nvidia-ami", "compute", "GPU node groups are tainted and run an NVIDIA AMI", types=("aws:eks/nodeGroup:NodeGroup",), check=gpu_pool),
    Policy("imdsv2-required", "compute", "instances require IMDSv2", types=("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"), check=imdsv2),
    Policy("triton-pod-hardening", "serving", "Triton pods run as non-root, with probes, explicit model control and GPU limits", types=("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job"), check=triton_pods),
    Policy("triton-pdb", "serving", "a PodDisruptionBudget selects the Triton pods", stack_check=triton_pdb),
    Policy("required-tags", "hygiene", f"AWS resources carry {', '.join(REQUIRED_TAGS)} (provider default tags, launch template tag specifications)", stack_check=required_tags),
)
NAMES = tuple(p.name for p in POLICIES)


def enforcement_of(policy: Policy, config: Mapping[str, Any] | None) -> str:
    """The level for `policy` under a CrossGuard policy config ({name: {"enforcementLevel": ...}} or {name: level})."""
    entry = (config or {}).get(policy.name, (config or {}).get("all"))
    if isinstance(entry, Mapping):
        entry = entry.get("enforcementLevel")
    return str(entry) if entry in (MANDATORY, ADVISORY, DISABLED) else policy.enforcement


def evaluate(resources: list[Resource], config: Mapping[str, Any] | None = None, *, masked_secrets: bool = True) -> list[Violation]:
    """Every violation of every enabled policy, plus plain secrets (mandatory), in policy order."""
    found: list[Violation] = []
    for policy in POLICIES:
        level = enforcement_of(policy, config)
        if level == DISABLED:
            continue
        if policy.check is not None:
            for r in resources:
                if r.type in policy.types:
                    found.extend(Violation(policy.name, level, r.urn, m) for m in policy.check(r))
        if policy.stack_check is not None:
            found.extend(Violation(policy.name, level, r.urn, m) for r, m in policy.stack_check(resources))
    level = enforcement_of(SECRETS_POLICY, config)
    if level != DISABLED:
        for r in resources:
            found.extend(Violation(SECRETS_POLICY.name, level, r.urn, m) for m in plain_secrets(r, masked=masked_secrets))
    return found


SECRETS_POLICY = Policy("no-plain-secrets", "hygiene", "no secret-looking value in a plain input", types=("*",))
ALL_NAMES = (*NAMES, SECRETS_POLICY.name)


def config_problems(config: Any, source: str) -> list[str]:
    """A policy config file's mistakes, naming the file and the policy."""
    if not isinstance(config, Mapping):
        return [f"{source}: must be a JSON object of policy name -> {{\"enforcementLevel\": \"advisory\"|\"mandatory\"|\"disabled\"}}"]
    problems = []
    for name, entry in config.items():
        if name not in ALL_NAMES and name != "all":
            problems.append(f"{source}: {name!r} is not a policy of the pack; policies: {', '.join(ALL_NAMES)}")
            continue
        level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
        if level not in (MANDATORY, ADVISORY, DISABLED):
            problems.append(f"{source}: {name}: enforcementLevel {level!r}; use advisory, mandatory or disabled")
    return problems


def resources_from_plan(items: list[Mapping[str, Any]]) -> list[Resource]:
    """Resources from `hybridserve plan --json` objects (the contract: urn, type, name, provider, inputs)."""
    return [
        Resource(type=str(i["type"]), name=str(i["name"]), urn=str(i["urn"]), props=i.get("inputs") or {}, provider_urn=str(i.get("provider") or ""))
        for i in items
    ]
