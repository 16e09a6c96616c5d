"""AWS side of the hybrid network: the VPC, its subnets and gateways, flow logs, the S3 endpoint.

Layout per availability zone: one public subnet (load balancers, NAT gateways; no public IPs on
launch) and one private subnet (the cluster nodes). Route tables per tier: one public table
(default route to the Internet gateway) and one private table per zone (default route to the
zone's NAT gateway, or to the single shared one). The VPN component adds the routes to the
OpenStack networks to every private table. The VPC's default security group is emptied, so
nothing lands in a permissive group by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from hybridserve.stackconfig.schema.network import FlowLogs, SubnetPlan
from infra.components import type_token
from infra.components.policies import role_name


@dataclass
class AwsNetworkArgs:
    name_prefix: str  # "hybridserve-<team>-<env>": physical names are <prefix>-<thing>
    region: str
    cidr: str
    subnets: list[SubnetPlan]
    nat_gateways: str  # "single" | "per_az"
    flow_logs: FlowLogs
    s3_endpoint: bool
    eks_cluster_name: str  # for the kubernetes.io/cluster/<name> subnet tag
    # Networks of the OpenStack site, and the TCP ports they may reach here (Triton's)
    peer_cidrs: list[str] = field(default_factory=list)
    peer_tcp_ports: list[int] = field(default_factory=list)


def zone_suffix(zone: str) -> str:
    """'eu-central-1a' -> 'a' (logical names stay short and stable)."""
    return zone.rsplit("-", 1)[-1].lstrip("0123456789") or zone


def port_ranges(ports: list[int]) -> list[tuple[int, int]]:
    """[8000, 8001, 8002, 9000] -> [(8000, 8002), (9000, 9000)]."""
    out: list[tuple[int, int]] = []
    for p in sorted(set(ports)):
        if out and p == out[-1][1] + 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


class AwsNetwork(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    private_route_tables: list[aws.ec2.RouteTable]
    nat_gateways: list[aws.ec2.NatGateway]

    def __init__(self, name: str, args: AwsNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("network", "AwsNetwork"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = args.name_prefix
        cluster_tag = f"kubernetes.io/cluster/{args.eks_cluster_name}"

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{p}-vpc"},
            opts=child,
        )
        # CIS AWS 5.4: the default security group allows nothing.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[], tags={"Name": f"{p}-default-deny"}, opts=child)
        self.igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{p}-igw"}, opts=child)

        self.public_subnets, self.private_subnets = [], []
        for s in args.subnets:
            z = zone_suffix(s.availability_zone)
            self.public_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-public-{z}",
                    vpc_id=self.vpc.id,
                    cidr_block=s.public_cidr,
                    availability_zone=s.availability_zone,
                    map_public_ip_on_launch=False,  # only NAT gateways and load balancers, with their own addresses
                    tags={"Name": f"{p}-public-{z}", "hybridserve.io/tier": "public", "kubernetes.io/role/elb": "1", cluster_tag: "shared"},
                    opts=child,
                )
            )
            self.private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{z}",
                    vpc_id=self.vpc.id,
                    cidr_block=s.private_cidr,
                    availability_zone=s.availability_zone,
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{p}-private-{z}", "hybridserve.io/tier": "private", "kubernetes.io/role/internal-elb": "1", cluster_tag: "shared"},
                    opts=child,
                )
            )

        # Public tier: one table, default route to the Internet gateway.
        self.public_route_table = aws.ec2.RouteTable(f"{name}-public", vpc_id=self.vpc.id, tags={"Name": f"{p}-public"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=self.public_route_table.id, destination_cidr_block="0.0.0.0/0", gateway_id=self.igw.id, opts=child)
        for s, subnet in zip(args.subnets, self.public_subnets):
            aws.ec2.RouteTableAssociation(f"{name}-public-{zone_suffix(s.availability_zone)}", subnet_id=subnet.id, route_table_id=self.public_route_table.id, opts=child)

        # NAT: one per zone (HA: a zone failure takes only its own egress down) or one shared.
        nat_zones = args.subnets if args.nat_gateways == "per_az" else args.subnets[:1]
        self.nat_gateways = []
        for s in nat_zones:
            z = zone_suffix(s.availability_zone)
            eip = aws.ec2.Eip(f"{name}-nat-{z}", domain="vpc", tags={"Name": f"{p}-nat-{z}"}, opts=child)
            public = self.public_subnets[args.subnets.index(s)]
            self.nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{z}",
                    allocation_id=eip.allocation_id,
                    subnet_id=public.id,
                    connectivity_type="public",
                    tags={"Name": f"{p}-nat-{z}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.igw]),
                )
            )

        # Private tier: one table per zone, default route to the zone's (or the shared) NAT gateway.
        self.private_route_tables = []
        for i, (s, subnet) in enumerate(zip(args.subnets, self.private_subnets)):
            z = zone_suffix(s.availability_zone)
            nat = self.nat_gateways[i] if args.nat_gateways == "per_az" else self.nat_gateways[0]
            rtb = aws.ec2.RouteTable(f"{name}-private-{z}", vpc_id=self.vpc.id, tags={"Name": f"{p}-private-{z}"}, opts=child)
            aws.ec2.Route(f"{name}-private-{z}-default", route_table_id=rtb.id, destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{z}", subnet_id=subnet.id, route_table_id=rtb.id, opts=child)
            self.private_route_tables.append(rtb)

        # Model downloads from S3 stay on the AWS network (no NAT data charges, no Internet path).
        self.s3_endpoint = None
        if args.s3_endpoint:
            self.s3_endpoint = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=[t.id for t in self.private_route_tables],
                tags={"Name": f"{p}-s3"},
                opts=child,
            )

        # Peer access: what the OpenStack site may reach here (Triton's ports, ICMP for ping and
        # path-MTU discovery through the tunnel). The cluster component attaches it to the nodes.
        ingress = []
        for cidr in args.peer_cidrs:
            for low, high in port_ranges(args.peer_tcp_ports):
                ingress.append(aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=low, to_port=high, cidr_blocks=[cidr], description=f"OpenStack site {cidr}: serving"))
            ingress.append(aws.ec2.SecurityGroupIngressArgs(protocol="icmp", from_port=-1, to_port=-1, cidr_blocks=[cidr], description=f"OpenStack site {cidr}: ICMP (ping, PMTUD)"))
        self.peer_security_group = aws.ec2.SecurityGroup(
            f"{name}-peer",
            vpc_id=self.vpc.id,
            name=f"{p}-from-openstack",
            description="Cluster nodes: what the OpenStack site may reach through the VPN",
            ingress=ingress,
            tags={"Name": f"{p}-from-openstack"},
            opts=child,
        )

        # Audit: flow logs of the whole VPC to a CloudWatch log group encrypted with a key of its own.
        self.logs_kms_key = self._logs_key(name, args)
        self.log_group_prefix = f"/{p}"
        self.flow_log = None
        if args.flow_logs.enabled:
            self.flow_log = self._flow_logs(name, args)

        self.vpc_id = self.vpc.id
        self.public_subnet_ids = [s.id for s in self.public_subnets]
        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.private_route_table_ids = [t.id for t in self.private_route_tables]
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "privateRouteTableIds": self.private_route_table_ids,
                "natPublicIps": [n.public_ip for n in self.nat_gateways],
                "peerSecurityGroupId": self.peer_security_group.id,
                "logsKmsKeyArn": self.logs_kms_key.arn,
            }
        )

    def _logs_key(self, name: str, args: AwsNetworkArgs) -> aws.kms.Key:
        """A KMS key for the stack's log groups only: flow logs, VPN tunnel logs, the EKS control plane's logs."""
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        log_group = lambda name: pulumi.Output.concat("arn:", partition, ":logs:", args.region, ":", account, ":log-group:", name)  # noqa: E731
        # The network's own log groups, and the EKS control plane's (EKS names it /aws/eks/<cluster>/cluster).
        log_groups = [log_group(f"/{args.name_prefix}/*"), log_group(f"/aws/eks/{args.eks_cluster_name}/cluster")]
        policy = pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AccountAdministers",
                        "Effect": "Allow",
                        "Principal": {"AWS": pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")},
                        "Action": "kms:*",
                        "Resource": "*",
                    },
                    {
                        "Sid": "CloudWatchLogsOfThisNetwork",
                        "Effect": "Allow",
                        "Principal": {"Service": f"logs.{args.region}.amazonaws.com"},
                        "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                        "Resource": "*",
                        "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
                    },
                ],
            }
        )
        key = aws.kms.Key(
            f"{name}-logs",
            description=f"{args.name_prefix}: VPC flow logs, VPN tunnel logs, EKS control-plane logs",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=policy,
            tags={"Name": f"{args.name_prefix}-network-logs"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(f"{name}-logs", name=f"alias/{args.name_prefix}-network-logs", target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self))
        return key

    def _flow_logs(self, name: str, args: AwsNetworkArgs) -> aws.ec2.FlowLog:
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/{args.name_prefix}/vpc-flow-logs",
            retention_in_days=args.flow_logs.retention_days,
            kms_key_id=self.logs_kms_key.arn,
            tags={"Name": f"{args.name_prefix}-vpc-flow-logs"},
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            name=role_name(f"{args.name_prefix}-vpc-flow-logs"),  # within IAM's 64 characters for long team/env names
            assume_role_policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": account},
                                "ArnLike": {"aws:SourceArn": pulumi.Output.concat("arn:", partition, ":ec2:", args.region, ":", account, ":vpc-flow-log/*")},
                            },
                        }
                    ],
                }
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "WriteThisLogGroup",
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
                        },
                        # DescribeLogGroups takes no resource ARN (IAM authorizes it only on "*"); it reveals names, not events.
                        {"Sid": "ListLogGroups", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"},
                    ],
                }
            ),
            opts=child,
        )
        self.flow_log_group = group
        return aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=self.vpc.id,
            traffic_type=args.flow_logs.traffic_type,
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=args.flow_logs.max_aggregation_interval,
            tags={"Name": f"{args.name_prefix}-vpc"},
            opts=child,
        )
