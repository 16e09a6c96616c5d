"""Offline plan: run the real program (infra/__main__.py) under the Pulumi SDK's mock engine.

No Pulumi CLI, no credentials, no cloud. The stack file's config is fed to the runtime the way the
CLI would (`set_all_config`, JSON text for structured keys, secret keys marked), so the program
reads it through `pulumi.Config` exactly as under `pulumi up`. Encrypted values (`{secure: ...}`)
cannot be decrypted offline: each is replaced by a unique placeholder that is marked secret, and
the plan fails if a placeholder ever shows up in plain text (a component dropped secretness).

JSON contract (`hybridserve plan --json FILE`; `format` changes only with a new version):

    {
      "format": "hybridserve-plan/v1",
      "project": "hybridserve", "stack": "vision-dev", "source": "stacks/Pulumi.vision-dev.yaml",
      "resources": [
        {
          "urn": "urn:pulumi:vision-dev::hybridserve::pulumi:providers:aws::aws",
          "type": "pulumi:providers:aws",    # type token
          "name": "aws",                     # logical name
          "parent": "urn:..." | null,        # parent URN; null only for the root stack
          "provider": "urn:..." | null,      # explicit provider URN of a custom resource; null for components
          "inputs": {...}                    # as the engine receives them: wire (camelCase) names
        }, ...                               # parents before children, siblings by URN (stable)
      ],
      "outputs": {...},                      # stack outputs
      "cost": {...}                          # hybridserve.stackconfig.cost.CostEstimate.as_dict()
    }

`plan --all --json FILE` writes {"format": "hybridserve-plan/v1-set", "plans": [<one object as above per stack>]}.

Every secret value, in inputs and outputs, is the string "[secret]"; a value the engine would
compute later is "[unknown]"; a reference to another resource is its URN.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import rpc, rpc_manager, settings
from pulumi.runtime.mocks import MockEngine, MockMonitor, MockSettings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from hybridserve.errors import UserError
from hybridserve.stackconfig.vpncheck import plan_problems as vpn_plan_problems
from hybridserve.stackconfig.cost import CostEstimate, estimate
from hybridserve.stackconfig.loader import display_path, load_stack_file, read_stack_config, stack_name_of
from hybridserve.stackconfig.schema.stack import EDGE_SSH_KEY, PROJECT, StackConfig
from infra.mocks import PlanMocks

FORMAT = "hybridserve-plan/v1"
SECRET_MARKER = "[secret]"
UNKNOWN_MARKER = "[unknown]"
PROGRAM_DIR = Path(__file__).resolve().parent  # infra/: what Pulumi.yaml's `main` points at


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    provider: str | None
    inputs: dict[str, Any]
    custom: bool
    # URNs it waits for (depends_on, expanded to custom resources as the engine receives them). Not part
    # of the JSON contract: tests read it to check the order a `pulumi up` would create things in.
    dependencies: tuple[str, ...] = ()
    # The retainOnDelete option (not in the JSON contract): a destroy leaves the cloud resource as it is.
    retain_on_delete: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent, "provider": self.provider, "inputs": self.inputs}

    @property
    def package(self) -> str:
        """Which provider package manages it: 'aws', 'openstack', 'kubernetes', ...; 'component' for components."""
        if self.type.startswith("pulumi:providers:"):
            return self.type.split(":")[2]
        if self.type == "pulumi:pulumi:Stack":
            return "stack"
        return self.type.split(":")[0] if self.custom else "component"


@dataclass
class Plan:
    stack: str
    source: str
    config: StackConfig
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    cost: CostEstimate
    warnings: list[str] = field(default_factory=list)

    def counts_by_package(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            if r.package != "stack":
                counts[r.package] = counts.get(r.package, 0) + 1
        return dict(sorted(counts.items()))

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "project": PROJECT,
            "stack": self.stack,
            "source": self.source,
            "resources": [r.as_json() for r in self.resources],
            "outputs": self.outputs,
            "cost": self.cost.as_dict(),
        }


def _tree_order(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Parents before children, siblings by URN: the mock engine registers from a thread pool, so
    registration order varies between runs and would make the JSON contract noisy to diff."""
    children: dict[str | None, list[PlannedResource]] = {}
    urns = {r.urn for r in resources}
    for r in resources:
        children.setdefault(r.parent if r.parent in urns else None, []).append(r)
    ordered: list[PlannedResource] = []
    stack = sorted(children.get(None, []), key=lambda r: r.urn, reverse=True)
    while stack:
        r = stack.pop()
        ordered.append(r)
        stack.extend(sorted(children.get(r.urn, []), key=lambda c: c.urn, reverse=True))
    return ordered


# --- turning engine payloads into plain JSON, secrets masked -------------------------------------


def to_plain(struct: Any) -> Any:
    """A protobuf Struct the engine receives -> JSON-safe Python, with secrets replaced by SECRET_MARKER."""
    return _mask(json_format.MessageToDict(struct))


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return SECRET_MARKER
        if sig == rpc._special_output_value_sig:
            if value.get("secret"):
                return SECRET_MARKER
            return _mask(value["value"]) if "value" in value else UNKNOWN_MARKER
        if sig == rpc._special_resource_sig:
            return value.get("urn")
        if sig in (rpc._special_asset_sig, rpc._special_archive_sig):
            kind = "asset" if sig == rpc._special_asset_sig else "archive"
            return {f"${kind}": {k: _mask(v) for k, v in value.items() if k != rpc._special_sig_key}}
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN_MARKER
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _urn_of_ref(ref: str) -> str | None:
    """A provider reference is '<urn>::<id>'."""
    return ref.rsplit("::", 1)[0] if ref else None


def _mark_secret(struct: Any, names: Any) -> Any:
    """The outputs in `names` wrapped as secrets, in a new Struct."""
    _ensure_event_loop()
    state = rpc.deserialize_properties(struct)
    for name in names:
        if name in state:
            state[name] = rpc.wrap_rpc_secret(state[name])
    return _sync_await(rpc.serialize_properties(state, {}))


def _with_secret_outputs(response: Any, names: Any) -> Any:
    """What the engine does and the SDK's mock monitor does not: mark `additionalSecretOutputs` secret.

    Without it a provider-marked secret (RandomPassword.result, a Magnum kubeconfig, a VPN tunnel
    key) would flow on in clear, and the plan would both mask too little and hide a real leak.
    """
    if not names or not response.object:
        return response
    return resource_pb2.RegisterResourceResponse(urn=response.urn, id=response.id, object=_mark_secret(response.object, names))


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, also recording every registration as the engine would receive it."""

    def __init__(self, mocks: PlanMocks):
        super().__init__(mocks)
        self.recorded: list[PlannedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self._stack_urn: str | None = None
        self._lock = threading.Lock()

    def RegisterResource(self, request):
        response = _with_secret_outputs(super().RegisterResource(request), request.additionalSecretOutputs)
        entry = PlannedResource(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent or None,
            provider=_urn_of_ref(request.provider) if request.custom else None,
            inputs=to_plain(request.object),
            custom=bool(request.custom),
            dependencies=tuple(request.dependencies),
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            if request.type == "pulumi:pulumi:Stack":
                self._stack_urn = response.urn
            self.recorded.append(entry)
        return response

    def ReadResource(self, request):
        response = super().ReadResource(request)
        if request.additionalSecretOutputs:
            response = resource_pb2.ReadResourceResponse(
                urn=response.urn, properties=_mark_secret(response.properties, request.additionalSecretOutputs)
            )
        with self._lock:
            self.recorded.append(
                PlannedResource(response.urn, request.type, request.name, request.parent or None, _urn_of_ref(request.provider), to_plain(request.properties), True)
            )
        return response

    def RegisterResourceOutputs(self, request):
        if request.urn == self._stack_urn:
            self.stack_outputs = to_plain(request.outputs)
        return super().RegisterResourceOutputs(request)


# --- feeding the stack file's config like the CLI does ---------------------------------------------


def runtime_config_of(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(config as the CLI passes it, secret keys, offline secret placeholders)."""
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    placeholders: list[str] = []
    for key, value in read_stack_config(path).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            placeholder = "offline-secret-" + hashlib.sha256(f"{path}|{key}|{value['secure']}".encode()).hexdigest()[:24]
            values[key] = placeholder
            secret_keys.append(key)
            placeholders.append(placeholder)
        elif isinstance(value, (dict, list)):
            values[key] = json.dumps(value)
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif value is not None:
            values[key] = str(value)
    return values, secret_keys, placeholders


# --- running the program ----------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _run_program(stack: str, values: dict[str, str], secret_keys: list[str], monitor: RecordingMonitor, logger: logging.Logger) -> None:
    """Run infra/ once, like the language host does, in a fresh context so runs never share state."""

    def run() -> None:
        settings.ROOT.set(None)
        mock_settings = MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=MockEngine(logger),
            project=PROJECT,
            stack=stack,
            dry_run=False,  # mocks know every value: run every apply, as an update would
            organization="organization",
            callbacks=None,
            outputs=set(),
            lock=threading.Lock(),
            parallel=None,
            legacy_apply_enabled=False,
            root_directory=str(PROGRAM_DIR.parent),
            package_refs={},
            base_providers_by_ref={},
        )
        mock_settings.rpc_manager = rpc_manager.RPCManager()
        settings.configure(mock_settings)
        runtime_config.set_all_config(values, secret_keys)
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(run_in_stack(lambda: runpy.run_path(str(PROGRAM_DIR), run_name="__main__")))
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(task)
            asyncio.set_event_loop(None)
            loop.close()

    contextvars.copy_context().run(run)


def plan_stack_file(path: Path) -> Plan:
    """Validate the stack file, then plan it. Raises StackConfigError / UserError (no traceback in the CLI)."""
    import pulumi

    cfg = load_stack_file(path)
    stack = stack_name_of(path)
    values, secret_keys, placeholders = runtime_config_of(path)
    notes: list[str] = []
    ssh_key = f"{PROJECT}:{EDGE_SSH_KEY}"
    if cfg.edge_sites() and ssh_key not in values:
        # A stack file shared in the repository rarely holds the deploy key: plan with a placeholder (masked like
        # any secret), and say that `pulumi up` refuses until it is set.
        placeholder = "offline-secret-" + hashlib.sha256(f"{path}|{ssh_key}|unset".encode()).hexdigest()[:24]
        values[ssh_key] = placeholder
        secret_keys.append(ssh_key)
        placeholders.append(placeholder)
        notes.append(f"{ssh_key} is not set: planned with a placeholder; `pulumi up` refuses until it is set "
                     f"(pulumi config set --secret {ssh_key} < ~/.ssh/edge_deploy_key)")
    mocks = PlanMocks(cfg.aws.region, stack)
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"hybridserve.plan.{stack}")
    logger.propagate = False
    collect = _Collect()
    logger.addHandler(collect)
    try:
        _run_program(stack, values, secret_keys, monitor, logger)
    except pulumi.RunError as exc:
        raise UserError(f"{display_path(path)}: the program stopped: {exc}", exit_code=2) from None
    finally:
        logger.removeHandler(collect)

    plan = Plan(
        stack=stack,
        source=display_path(path),
        config=cfg,
        resources=_tree_order(monitor.recorded),
        outputs=monitor.stack_outputs,
        cost=estimate(cfg),
        warnings=notes + collect.messages + [f"no mock for invoke {t}; it returned {{}} (add it to infra/mocks.py)" for t in dict.fromkeys(mocks.unmocked_calls)],
    )
    _check(plan, placeholders)
    return plan


def _check(plan: Plan, placeholders: list[str]) -> None:
    """Program mistakes the plan must not let through: leaked secrets, implicit default providers."""
    problems = []
    for r in plan.resources:
        text = json.dumps(r.inputs)
        for p in placeholders:
            if p in text:
                problems.append(f"{r.urn}: a secret config value reaches its inputs in plain text; wrap it with pulumi.Output.secret")
        # Python dynamic resources (the model publication) run under the language's own provider, which
        # the stacks do not deny (hybridserve.stackconfig.loader checks pulumi:disable-default-providers).
        if r.custom and r.provider is None and not r.type.startswith(("pulumi:providers:", "pulumi-python:dynamic")):
            problems.append(f"{r.urn}: uses the default provider; pass the explicit one (ctx.component_opts() or opts.provider=ctx.providers...)")
    problems.extend(vpn_plan_problems(plan.resources))  # both VPN ends got the same profile
    text = json.dumps(plan.outputs)
    if any(p in text for p in placeholders):
        problems.append(f"{plan.source}: a stack output holds a secret config value in plain text; wrap it with pulumi.Output.secret")
    if problems:
        raise UserError(f"{plan.source}: the plan of the program is not acceptable", exit_code=3, details=problems)
