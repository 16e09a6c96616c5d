"""StackContext: everything a component builder needs, created once per program run.

- `config`: the validated StackConfig (hybridserve.stackconfig.schema)
- `name(thing)`: physical names, "<project>-<team>-<env>-<thing>"
- `tags` / `openstack_tags`: common tags (team, environment, cost-center, managed-by, ...)
- `providers.aws` / `providers.openstack`: explicit providers; `kubernetes_provider()` adds one per cluster
- `component_opts()`: ResourceOptions that hand both cloud providers down to a component's children
- `outputs`: Triton endpoints, bucket URIs, kubeconfigs; exported by the program at the end
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_openstack as openstack

from hybridserve.stackconfig.schema.stack import PROJECT, StackConfig
from infra import config as config_module


@dataclass
class Providers:
    aws: aws.Provider
    openstack: openstack.Provider
    kubernetes: dict[str, k8s.Provider] = field(default_factory=dict)


@dataclass
class StackOutputs:
    """Values later steps read with `pulumi stack output` (sync, smoke gate). Keys: cluster or store name."""

    # e.g. {"aws": {"http": "http://host:8000", "grpc": "host:8001", "metrics": "http://host:8002/metrics"}}
    triton_endpoints: dict[str, Any] = field(default_factory=dict)
    # e.g. {"s3": "s3://bucket/models", "swift": "s3://https://swift.example/container/models"}
    bucket_uris: dict[str, Any] = field(default_factory=dict)
    # kubeconfig per cluster; always exported as a secret
    kubeconfigs: dict[str, Any] = field(default_factory=dict)
    # anything else a component wants to export, by output name
    extra: dict[str, Any] = field(default_factory=dict)


class StackContext:
    def __init__(self, cfg: StackConfig):
        self.config = cfg
        self.project = pulumi.get_project()
        self.stack = pulumi.get_stack()
        self.tags: dict[str, str] = cfg.common_tags()
        # OpenStack tags are plain strings.
        self.openstack_tags: list[str] = [f"{k}={v}" for k, v in sorted(self.tags.items())]
        self.outputs = StackOutputs()
        self.providers = Providers(aws=self._aws_provider(), openstack=self._openstack_provider())

    # --- naming -----------------------------------------------------------------------------

    def name(self, thing: str) -> str:
        """Physical resource name: <project>-<team>-<env>-<thing>."""
        return self.config.resource_name(thing)

    # --- providers --------------------------------------------------------------------------

    def _aws_provider(self) -> aws.Provider:
        cfg = self.config
        return aws.Provider(
            "aws",
            region=cfg.aws.region,
            # A declared account is enforced: credentials of any other account fail before anything changes.
            allowed_account_ids=[cfg.aws.account_id] if cfg.aws.account_id else None,
            # Every AWS resource that supports tags gets the common tags without each component repeating them.
            default_tags=aws.ProviderDefaultTagsArgs(tags=self.tags),
        )

    def _openstack_provider(self) -> openstack.Provider:
        os_cfg = self.config.openstack
        return openstack.Provider(
            "openstack",
            cloud=os_cfg.cloud,
            region=os_cfg.region,
            # Optional: without it the password comes from clouds.yaml / OS_PASSWORD.
            password=config_module.secret("openstack_password"),
        )

    def kubernetes_provider(self, cluster: str, kubeconfig: pulumi.Input[str], *, parent: pulumi.Resource | None = None) -> k8s.Provider:
        """One Kubernetes provider per cluster ('aws', 'openstack'); its kubeconfig is also exported, as a secret."""
        if cluster in self.providers.kubernetes:
            raise ValueError(f"a Kubernetes provider for cluster {cluster!r} already exists")
        kubeconfig = pulumi.Output.secret(kubeconfig)
        provider = k8s.Provider(
            f"k8s-{cluster}",
            kubeconfig=kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        self.providers.kubernetes[cluster] = provider
        self.outputs.kubeconfigs[cluster] = kubeconfig
        return provider

    def component_opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a top-level component: its children inherit the explicit AWS and OpenStack providers."""
        providers = [self.providers.aws, self.providers.openstack, *kwargs.pop("providers", [])]
        return pulumi.ResourceOptions(providers=providers, **kwargs)

    # --- outputs ------------------------------------------------------------------------------

    def export_outputs(self) -> None:
        """The stack outputs (names are a contract with `hybridserve sync` / `smoke`; always present)."""
        cfg = self.config
        pulumi.export("project", PROJECT)
        pulumi.export("team", cfg.team)
        pulumi.export("environment", cfg.environment)
        pulumi.export("tritonEndpoints", self.outputs.triton_endpoints)
        pulumi.export("bucketUris", self.outputs.bucket_uris)
        pulumi.export("kubeconfigs", pulumi.Output.secret(self.outputs.kubeconfigs))
        for name, value in self.outputs.extra.items():
            pulumi.export(name, value)
