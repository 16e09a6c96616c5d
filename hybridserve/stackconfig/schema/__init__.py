"""The stack configuration schema, one module per concept (see each module's docstring).

common    base model, CIDR / name / tag types, Issue and collect_issues
network   AwsVpc, OpenStackNetwork
vpn       VpnConfig (IKE / IPsec profiles, tunnel inside CIDRs, peering group)
clusters  EksCluster, MagnumCluster, GPU node pools, taints
storage   StorageConfig (KMS key, bucket names, prefix, versioning, retention)
serving   ServingConfig (Triton image, models, replicas, resources, Slo)
stack     StackConfig (the root), AwsConfig, OpenStackConfig, cross-section checks, key paths
"""

from hybridserve.stackconfig.schema.stack import PROJECT, SECRET_KEYS, StackConfig, format_loc

__all__ = ["PROJECT", "SECRET_KEYS", "StackConfig", "format_loc"]
