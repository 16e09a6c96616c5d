"""The kit's policies as CrossGuard policies (pulumi_policy), built from hybridserve/policy/rules.py.

Kept apart from `__main__.py` because constructing a `PolicyPack` starts serving the engine: tests build
the policies and call them directly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The rules are plain Python in the checkout; the pack's environment does not install the kit.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from hybridserve.policy import rules  # noqa: E402

LEVELS = {rules.MANDATORY: EnforcementLevel.MANDATORY, rules.ADVISORY: EnforcementLevel.ADVISORY, rules.DISABLED: EnforcementLevel.DISABLED}


def _provider_urn(provider: Any) -> str:
    return str(getattr(provider, "urn", "") or "")


def _resource(args: ResourceValidationArgs) -> rules.Resource:
    return rules.Resource(type=args.resource_type, name=args.name, urn=args.urn, props=args.props, provider_urn=_provider_urn(args.provider))


def _resource_policy(policy: rules.Policy) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        if args.resource_type not in policy.types:
            return
        for message in policy.check(_resource(args)):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(policy.name, policy.description, validate, LEVELS[policy.enforcement])


def _stack_policy(policy: rules.Policy) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation) -> None:
        resources = [
            rules.Resource(type=r.resource_type, name=r.name, urn=r.urn, props=r.props, provider_urn=_provider_urn(r.provider))
            for r in args.resources
        ]
        for resource, message in policy.stack_check(resources):
            report_violation(message, resource.urn)

    return StackValidationPolicy(policy.name, policy.description, validate, LEVELS[policy.enforcement])


def _secrets_policy() -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        # CrossGuard hands secrets over unwrapped: only value patterns can tell a plain secret here.
        for message in rules.plain_secrets(_resource(args), masked=False):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(rules.SECRETS_POLICY.name, rules.SECRETS_POLICY.description, validate, EnforcementLevel.MANDATORY)


def build_policies() -> list:
    built = [_resource_policy(p) if p.check is not None else _stack_policy(p) for p in rules.POLICIES]
    return [*built, _secrets_policy()]
