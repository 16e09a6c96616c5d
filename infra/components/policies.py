"""IAM, KMS and S3 policy documents, written as JSON built from Outputs, and the kit's IAM role names.

Every document is a plain dict of statements turned into a JSON string with `document()`
(`pulumi.Output.json_dumps`), so values that are Outputs (ARNs, the OIDC issuer) resolve inside
it and tests parse the same JSON the cloud receives (see tests/test_storage.py, test_cluster.py).

Role names are deterministic (`RoleNames`), which breaks the one cycle between the components:
the KMS key policy (storage, built first) names the roles that may use the key by ARN in an
`aws:PrincipalArn` condition, before the cluster component creates them. KMS checks principals
named in `Principal` when the policy is set, not ARNs in conditions, so the order of creation
does not matter and no role is granted more than its statement says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

VERSION = "2012-10-17"
# IAM role names are at most 64 characters.
_ROLE_NAME_MAX = 64

# Key administration without use: the account (IAM) may manage the key, never encrypt or decrypt with it.
# Administration only, listed one by one: a wildcard such as kms:Create* would include kms:CreateGrant,
# and a grant can give kms:Decrypt to anyone (the policy's GrantsForAwsServicesOnly statement is the
# only way to grants). No action here encrypts, decrypts or generates data keys.
KMS_ADMIN_ACTIONS = [
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:RotateKeyOnDemand",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:PutKeyPolicy",
    "kms:UpdateKeyDescription",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:RevokeGrant",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]
KMS_VOLUME_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
KMS_EKS_SECRETS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:ListGrants"]
S3_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]


def document(*statements: dict[str, Any]) -> pulumi.Output[str]:
    """A policy document (JSON text) from statements that may hold Outputs."""
    return pulumi.Output.json_dumps({"Version": VERSION, "Statement": list(statements)})


def statement(sid: str, effect: str, actions: list[str] | str, resources: Any, principal: Any = None, condition: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"Sid": sid, "Effect": effect}
    if principal is not None:
        out["Principal"] = principal
    out["Action"] = actions
    out["Resource"] = resources
    if condition:
        out["Condition"] = condition
    return out


def trust_service(service: str) -> pulumi.Output[str]:
    """Trust policy: the AWS service may assume the role (EKS control plane, EC2 nodes)."""
    return document({"Sid": "TrustService", "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def trust_service_account(oidc_provider_arn: pulumi.Input[str], issuer_url: pulumi.Input[str], namespace: str, service_account: str) -> pulumi.Output[str]:
    """IRSA trust: exactly one Kubernetes service account, through the cluster's OIDC provider, for STS only."""

    def build(args: list[str]) -> str:
        arn, issuer = args
        host = issuer.removeprefix("https://")
        return json.dumps(
            {
                "Version": VERSION,
                "Statement": [
                    {
                        "Sid": "TrustOneServiceAccount",
                        "Effect": "Allow",
                        "Principal": {"Federated": arn},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {
                                f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                                f"{host}:aud": "sts.amazonaws.com",
                            }
                        },
                    }
                ],
            }
        )

    return pulumi.Output.all(oidc_provider_arn, issuer_url).apply(build)


# --- names ----------------------------------------------------------------------------------------


def role_name(physical: str) -> str:
    """An IAM role name from a physical name; a stable hash suffix keeps long ones within 64 characters."""
    if len(physical) <= _ROLE_NAME_MAX:
        return physical
    digest = hashlib.sha256(physical.encode()).hexdigest()[:8]
    return f"{physical[: _ROLE_NAME_MAX - 9]}-{digest}"


def edge_reader_name(name, site: str) -> str:
    """The IAM user an edge site's hosts read the published repository with (`name` is `ctx.name`); IAM user
    names are at most 64 characters, like role names."""
    return role_name(name(f"edge-{site}-reader"))


@dataclass(frozen=True)
class RoleNames:
    """The IAM roles of a stack, by purpose. Built from `ctx.name()`, so any component can name them."""

    cluster: str
    node: str
    ebs_csi: str
    vpc_cni: str
    autoscaler: str
    model_reader: str
    model_writer: str

    @classmethod
    def of(cls, name) -> "RoleNames":
        """`name` is `ctx.name` (thing -> physical name)."""
        return cls(
            cluster=role_name(name("eks-cluster")),
            node=role_name(name("eks-node")),
            ebs_csi=role_name(name("ebs-csi")),
            vpc_cni=role_name(name("vpc-cni")),
            autoscaler=role_name(name("cluster-autoscaler")),
            model_reader=role_name(name("model-reader")),
            model_writer=role_name(name("model-writer")),
        )


@dataclass(frozen=True)
class Account:
    """The deploying account and partition, as Outputs (invokes through the explicit AWS provider)."""

    id: pulumi.Output[str]
    partition: pulumi.Output[str]
    region: str

    @classmethod
    def lookup(cls, provider: aws.Provider, region: str) -> "Account":
        opts = pulumi.InvokeOutputOptions(provider=provider)
        return cls(
            id=aws.get_caller_identity_output(opts=opts).account_id,
            partition=aws.get_partition_output(opts=opts).partition,
            region=region,
        )

    def role_arn(self, role: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", self.partition, ":iam::", self.id, ":role/", role)

    def user_arn(self, user: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", self.partition, ":iam::", self.id, ":user/", user)

    @property
    def root(self) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", self.partition, ":iam::", self.id, ":root")

    @property
    def autoscaling_service_role(self) -> pulumi.Output[str]:
        """The EC2 Auto Scaling service-linked role: it launches node group instances and so creates their encrypted volumes."""
        return pulumi.Output.concat(
            "arn:", self.partition, ":iam::", self.id, ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
        )
