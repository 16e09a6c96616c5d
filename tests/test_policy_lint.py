"""Every IAM, S3 bucket and KMS key policy the planned program produces, read by a third party: parliament.

As the manifests get checkov (tests/test_manifests.py), the policy documents get parliament
(duo-labs/parliament, pinned in pyproject's dev extra): each example stack is planned under the mock
engine and every policy document in any resource's inputs (role trust policies, inline role policies,
bucket policies, key policies) is linted, statement by statement so a finding names its statement.

A finding must match PARLIAMENT_ALLOWED (a pattern AWS itself documents, with its source) or the test
fails; an allow-list entry that no longer matches anything fails too. A deliberately bad policy proves
the linter reports what the allow-list does not excuse.
"""

from __future__ import annotations

import importlib
import importlib.resources
import copy
import json
import re
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest

from infra.plan import Plan


def _import_parliament() -> types.ModuleType:
    """parliament 1.6.4 reads its two data files with pkg_resources.resource_filename at import, and
    setuptools 82 removed pkg_resources (duo-labs/parliament#247, open). Pinning setuptools<82 would
    reinstate a release with an open advisory (GHSA-h35f-9h28-mq5c, fixed in 83), so only for this
    import a stand-in answers the one call with importlib.resources, as the migration guide does;
    it is removed again so no other code sees a partial pkg_resources."""
    try:
        importlib.import_module("pkg_resources")
    except ModuleNotFoundError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
        try:
            return importlib.import_module("parliament")
        finally:
            del sys.modules["pkg_resources"]
    return importlib.import_module("parliament")


parliament = _import_parliament()

# Which policy a document is, by the resource type and input that carries it. A policy document in any
# other input fails test_every_policy_is_classified: a new kind must be added here, not skipped.
KINDS: dict[tuple[str, str], str] = {
    ("aws:iam/role:Role", "assumeRolePolicy"): "trust",
    ("aws:iam/rolePolicy:RolePolicy", "policy"): "identity",
    ("aws:iam/policy:Policy", "policy"): "identity",
    ("aws:iam/userPolicy:UserPolicy", "policy"): "identity",  # the edge sites' read-only users
    ("aws:s3/bucketPolicy:BucketPolicy", "policy"): "bucket",
    ("aws:kms/key:Key", "policy"): "key",
}


@dataclass(frozen=True)
class Allowed:
    """A parliament finding on a pattern AWS documents. Matches a finding by policy kind, issue, statement Sid and detail."""

    kind: str
    issue: str
    detail: str  # regex, searched in the finding's detail as text
    why: str
    source: str
    sid: str = ".*"  # regex, matched against the whole Sid ("#<index>" when a statement has none)

    def matches(self, f: "Finding") -> bool:
        return (
            f.kind == self.kind and f.issue == self.issue
            and re.fullmatch(self.sid, f.sid) is not None and re.search(self.detail, f.detail) is not None
        )


# Keep it short: each entry must still match a finding (test_parliament_allow_list_is_not_stale).
PARLIAMENT_ALLOWED: list[Allowed] = [
    Allowed(
        "trust", "MALFORMED", r"^Statement contains neither Resource nor NotResource$",
        "a role trust policy is the role's own resource policy: it names a Principal and no Resource (IAM refuses one that has it)",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html",
    ),
    Allowed(
        "trust", "UNKNOWN_FEDERATION_SOURCE", r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[0-9A-F]+$",
        "IRSA: the cluster's EKS OIDC provider is the federated principal; parliament knows no oidc.eks.* issuer",
        "https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html",
        sid="TrustOneServiceAccount",
    ),
    Allowed(
        "key", "RESOURCE_STAR", r".",
        'in a key policy "Resource": "*" means this key and nothing else',
        "https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html",
    ),
    Allowed(
        "key", "UNKNOWN_CONDITION_FOR_ACTION", r"^Unknown condition kms:EncryptionContext:aws:logs:arn for action kms:Describe\w+$",
        "CloudWatch Logs' documented key policy: kms:Describe* under the log-group encryption-context condition",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
        sid="CloudWatchLogsOfThisNetwork",
    ),
    Allowed(
        "key", "MISMATCHED_TYPE", r"^Type mismatch: ArnLike requires a value of type Arn but given String$",
        "CloudWatch Logs' documented key policy compares kms:EncryptionContext:aws:logs:arn with ArnLike",
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
        sid="CloudWatchLogsOfThisNetwork",
    ),
    Allowed(
        "bucket", "EXCEPTION", r"^TypeError: expected string or bytes-like object, got 'float'$",
        "AWS's TLS-version bucket policy compares s3:TlsVersion with the number 1.2; parliament 1.6.4 checks numeric values "
        "against an integer-only pattern (statement.py, `^\\d+$`) and crashes on a decimal number (and flags the string \"1.2\")",
        "https://repost.aws/knowledge-center/s3-enforce-modern-tls",
        sid="DenyOldTls",
    ),
    Allowed(
        "bucket", "MISMATCHED_TYPE_BUT_USABLE", r"^Type mismatch: StringNotEqualsIfExists requires a value of type String but given Arn$",
        "requiring one KMS key for uploads compares s3:x-amz-server-side-encryption-aws-kms-key-id with the key ARN, as AWS documents",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html",
        sid="DenyUploadsWithAnotherKey",
    ),
    Allowed(
        "identity", "RESOURCE_STAR", r"^\['autoscaling:SetDesiredCapacity', 'autoscaling:TerminateInstanceInAutoScalingGroup'\]$",
        "the cluster autoscaler's documented policy: the node groups' Auto Scaling groups are EKS-named, so scaling is scoped by their tags (condition), not by ARN",
        "https://docs.aws.amazon.com/eks/latest/best-practices/cas.html",
        sid="ScaleOnlyThisClustersNodeGroups",
    ),
]


@dataclass(frozen=True)
class PolicyDoc:
    where: str  # "<stack> <type> <name> <input path>"
    kind: str
    document: dict[str, Any]


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    sid: str
    issue: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where} [{self.kind}] {self.sid}: {self.issue} {self.detail}"


def _documents(value: Any, path: str):
    """(input path, parsed policy) for every JSON policy document (a string) anywhere in `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _documents(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _documents(v, f"{path}[{i}]")
    elif isinstance(value, str) and value.lstrip().startswith("{") and '"Statement"' in value:
        doc = json.loads(value)
        if isinstance(doc, dict) and "Statement" in doc:
            yield path, doc


def policies_of(plan: Plan) -> tuple[list[PolicyDoc], list[str]]:
    """Every policy document in the plan's resource inputs, and where one was found that KINDS does not classify."""
    found, unclassified = [], []
    for r in plan.resources:
        for path, doc in _documents(r.inputs, ""):
            where = f"{plan.stack} {r.type} {r.name} {path}"
            kind = KINDS.get((r.type, path))
            if kind is None:
                unclassified.append(where)
            else:
                found.append(PolicyDoc(where, kind, doc))
    return found, unclassified


def lint(policy: PolicyDoc) -> list[Finding]:
    """parliament's findings on each statement alone (so each names its statement), then on the whole
    document for what only shows across statements (duplicate Sids, privilege escalation patterns)."""
    statements = policy.document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for i, st in enumerate(statements):
        sid = st.get("Sid") or f"#{i}"
        for issue, detail in _analyze({"Version": policy.document.get("Version"), "Statement": [st]}):
            out.append(Finding(policy.where, policy.kind, sid, issue, detail))
            seen.add((issue, detail))
    for issue, detail in _analyze(policy.document):
        if (issue, detail) not in seen:
            out.append(Finding(policy.where, policy.kind, "(document)", issue, detail))
    return list(dict.fromkeys(out))


def _analyze(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(issue, detail) of each parliament finding. A crash of the analysis is a finding too, EXCEPTION with
    the error, as parliament reports its auditors' crashes: it must be listed to pass, never lost."""
    try:
        return [(f.issue, str(f.detail)) for f in parliament.analyze_policy_string(json.dumps(document)).findings]
    except Exception as exc:  # noqa: BLE001 - the linter's own failure is what is reported
        return [("EXCEPTION", f"{type(exc).__name__}: {exc}")]


def unexpected(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not any(a.matches(f) for a in PARLIAMENT_ALLOWED)]


# --- the plan's policies ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned(example_plans) -> dict[str, Plan]:
    return copy.deepcopy(example_plans)  # planned once per test run (conftest)


@pytest.fixture(scope="module")
def linted(planned) -> list[Finding]:
    findings: list[Finding] = []
    for plan in planned.values():
        for policy in policies_of(plan)[0]:
            findings.extend(lint(policy))
    return findings


def test_every_policy_is_classified_and_every_policy_bearing_resource_is_read(planned):
    for name, plan in planned.items():
        policies, unclassified = policies_of(plan)
        assert unclassified == [], "a policy document in an input KINDS does not classify: add it to KINDS"
        kinds = {k: sum(p.kind == k for p in policies) for k in ("trust", "identity", "bucket", "key")}
        count = lambda type_: sum(r.type == type_ for r in plan.resources)  # noqa: E731
        # every role's trust policy, every inline policy, bucket policy and key policy was read
        assert kinds["trust"] == count("aws:iam/role:Role") > 0, name
        assert kinds["identity"] == count("aws:iam/rolePolicy:RolePolicy") + count("aws:iam/policy:Policy") + count("aws:iam/userPolicy:UserPolicy") > 0, name
        assert kinds["bucket"] == count("aws:s3/bucketPolicy:BucketPolicy") == 2, name
        assert kinds["key"] == count("aws:kms/key:Key") == 2, name  # the stack key and the network's log key


def test_parliament_finds_nothing_outside_the_allow_list(linted):
    assert [str(f) for f in unexpected(linted)] == []


def test_parliament_allow_list_is_not_stale(linted):
    stale = [a for a in PARLIAMENT_ALLOWED if not any(a.matches(f) for f in linted)]
    assert stale == [], "an allow-listed finding no longer occurs: remove it from PARLIAMENT_ALLOWED"


def test_the_fixed_findings_stay_fixed(planned):
    """The flow-log role asks logs:DescribeLogGroups on "*" (the only resource it takes), and s3:TlsVersion is a number."""
    plan = planned["vision-dev"]
    [flow] = [r for r in plan.resources if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name.endswith("flow-logs")]
    sts = json.loads(flow.inputs["policy"])["Statement"]
    describe = [s for s in sts if "logs:DescribeLogGroups" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert [s["Resource"] for s in describe] == ["*"]
    bucket_policies = [r for r in plan.resources if r.type == "aws:s3/bucketPolicy:BucketPolicy"]
    assert bucket_policies
    for r in bucket_policies:
        [tls] = [s for s in json.loads(r.inputs["policy"])["Statement"] if s["Sid"] == "DenyOldTls"]
        assert tls["Condition"] == {"NumericLessThan": {"s3:TlsVersion": 1.2}}


# --- positive controls: the linter reports, the allow-list does not excuse --------------------------------

BAD_FLOW_LOG_ROLE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
            "Resource": ["arn:aws:logs:eu-central-1:123456789012:log-group:/x/vpc-flow-logs"],
        }
    ],
}
BAD_BUCKET_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyOldTls", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        }
    ],
}
# Resource "*" is "this key" in a key policy only: in an identity policy it is every key in the account.
BAD_IDENTITY_KMS = {"Version": "2012-10-17", "Statement": [{"Sid": "AnyKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}


@pytest.mark.parametrize(
    "policy, kind, issue, detail",
    [
        (BAD_FLOW_LOG_ROLE, "identity", "RESOURCE_MISMATCH", "logs:DescribeLogGroups"),
        (BAD_BUCKET_POLICY, "bucket", "MISMATCHED_TYPE", "s3:TlsVersion requires a value of type Numeric"),
        (BAD_IDENTITY_KMS, "identity", "RESOURCE_STAR", "kms:Decrypt"),
    ],
    ids=["flow-log-describe-on-an-arn", "tls-version-as-string", "kms-star-in-identity-policy"],
)
def test_parliament_reports_a_bad_policy_the_allow_list_does_not_excuse(policy, kind, issue, detail):
    findings = lint(PolicyDoc("canary", kind, policy))
    reported = [f for f in unexpected(findings) if f.issue == issue and detail in f.detail]
    assert reported, [str(f) for f in findings]
