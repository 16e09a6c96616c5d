"""Entry point the Pulumi CLI runs for `--policy-pack policy`."""

from pulumi_policy import EnforcementLevel, PolicyPack

from pack import build_policies

PolicyPack(name="hybridserve", enforcement_level=EnforcementLevel.MANDATORY, policies=build_policies())
