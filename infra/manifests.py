"""The Kubernetes manifests the program renders, from its offline plan (`hybridserve plan --manifests DIR`).

The team rule: what the program sends to a cluster is validated against the official Kubernetes
schemas (kubernetes-validate, strict) and scanned with checkov. Both need plain manifests, so this
module turns the plan's Kubernetes resources into them.

How a manifest is derived from a planned resource:

- type `kubernetes:<group>/<version>:<Kind>` -> `apiVersion` `<group>/<version>` (`v1` for `core`)
  and `kind`; the wire inputs of pulumi-kubernetes are already the Kubernetes field names
  (camelCase), so `metadata` and every other input (`spec`, `data`, `provisioner`, ...) are copied
  as they are, in the order apiVersion, kind, metadata, then the rest sorted;
- the cluster is the one of the resource's explicit provider (`ctx.kubernetes_provider(cluster, ...)`
  names it `k8s-<cluster>`: `k8s-aws`, `k8s-openstack`); its Kubernetes minor version comes from the
  plan too: the EKS cluster's `version`, or the Magnum cluster template's `kube_tag` label, next
  to the provider in the same component;
- `kubernetes:helm.sh/v3:Release` is not a manifest (the chart renders on the cluster): it is
  reported apart, with chart, version, repository, namespace and values;
- the other non-object types of pulumi-kubernetes (yaml / kustomize / helm components, `...Patch`,
  `...List`) are listed as skipped with the reason, never silently dropped.

Placeholders: the plan masks a secret value as "[secret]" and a value only known after deployment
as "[unknown]". Left in, they would make validation judge placeholder text (a map that is the string
"[secret]" fails, and so would a base64 field). Each one is replaced by a stand-in built from the
Kubernetes schema of the field it sits in: the minimal valid value of that type (a string
"placeholder-secret" / "placeholder-unknown", which is also a valid DNS-1123 name; base64 of it
for `format: byte`; the epoch for date-time; 0, false, []; for a map one entry
{"placeholder-secret": <stand-in of its value>}; for an object its required fields). Every stand-in
is recorded (`StandIn`) and listed in the header of the written YAML, so nobody mistakes it for
program output. A field the schema does not know keeps a string stand-in; strict validation then
reports the field itself.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from hybridserve.errors import UserError

SECRET_MARKER = "[secret]"  # as infra.plan writes them (not imported: plan.py pulls in the Pulumi runtime)
UNKNOWN_MARKER = "[unknown]"
STAND_IN_TEXT = {SECRET_MARKER: "placeholder-secret", UNKNOWN_MARKER: "placeholder-unknown"}
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
HELM_RELEASES_FILE = "helm-releases.yaml"
_TYPE = re.compile(r"^kubernetes:(?P<group>[^/:]+)/(?P<version>[^:]+):(?P<kind>[A-Za-z0-9]+)$")
# pulumi-kubernetes types that are no Kubernetes object: components and provider-side renderers.
_NOT_OBJECT_GROUPS = {"helm.sh": "a Helm chart or release (rendered on the cluster)", "yaml": "a YAML component", "kustomize": "a kustomize component"}
# A pinned chart version: exact semver (no range, no 'latest'), as the stack schema's HelmChartPin requires.
PINNED_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


@dataclass
class StandIn:
    """A placeholder replaced by a schema-valid value: where and which."""

    manifest: str  # kind/namespace/name
    path: str  # dotted field path, e.g. stringData
    marker: str  # "[secret]" or "[unknown]"

    def __str__(self) -> str:
        return f"{self.manifest} .{self.path}: {self.marker}"


@dataclass
class HelmRelease:
    cluster: str
    urn: str
    name: str  # release name
    chart: str
    version: str | None
    repo: str | None  # repositoryOpts.repo; an oci:// chart carries its registry in `chart`
    namespace: str | None
    create_namespace: bool
    values: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "chart": self.chart,
            "version": self.version,
            "repo": self.repo,
            "namespace": self.namespace,
            "createNamespace": self.create_namespace,
            "values": self.values,
            "urn": self.urn,
        }

    def problems(self) -> list[str]:
        """What makes the release unreproducible: no exact chart version, no repository."""
        out = []
        if not self.version or not PINNED_VERSION.match(str(self.version)):
            out.append(f"{self.cluster}: Helm release {self.name!r} ({self.chart}): chart version {self.version!r} is not pinned (exact x.y.z)")
        if not self.repo and not self.chart.startswith("oci://"):
            out.append(f"{self.cluster}: Helm release {self.name!r} ({self.chart}): no chart repository (repositoryOpts.repo or an oci:// chart)")
        return out


@dataclass
class ClusterManifests:
    cluster: str  # "aws", "openstack"
    provider_urn: str
    kubernetes_version: str | None  # minor, e.g. "1.31"; None when the plan does not say
    manifests: list[dict[str, Any]] = field(default_factory=list)
    urns: list[str] = field(default_factory=list)  # source resource of each manifest
    stand_ins: list[StandIn] = field(default_factory=list)


@dataclass
class Rendered:
    stack: str
    clusters: dict[str, ClusterManifests]
    releases: list[HelmRelease]
    skipped: list[str]  # "urn: reason"

    def write(self, directory: Path) -> list[Path]:
        """One multi-document YAML per cluster (<cluster>.yaml) and helm-releases.yaml; returns the paths."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            written = []
            for name, cm in sorted(self.clusters.items()):
                path = directory / f"{name}.yaml"
                path.write_text(_cluster_yaml(self.stack, cm), encoding="utf-8")
                written.append(path)
            path = directory / HELM_RELEASES_FILE
            header = f"# Helm releases of stack {self.stack} (not manifests: each chart renders on its cluster)\n"
            body = yaml.safe_dump({"releases": [r.as_dict() for r in self.releases]}, sort_keys=False, default_flow_style=False)
            path.write_text(header + body, encoding="utf-8")
            written.append(path)
        except OSError as exc:
            raise UserError(f"--manifests {directory}: cannot write: {exc.strerror}", exit_code=2) from None
        return written


def _cluster_yaml(stack: str, cm: ClusterManifests) -> str:
    lines = [
        f"# Kubernetes objects of stack {stack} on cluster {cm.cluster!r} (Kubernetes {cm.kubernetes_version or 'unknown'}),",
        "# rendered from the offline plan (hybridserve plan --manifests). Not for kubectl apply: `pulumi up` applies them.",
    ]
    if cm.stand_ins:
        lines.append("# Placeholders replaced by schema-valid stand-ins (infra/manifests.py):")
        lines.extend(f"#   {s}" for s in cm.stand_ins)
    docs = []
    for urn, manifest in zip(cm.urns, cm.manifests):
        docs.append(f"---\n# {urn}\n" + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))
    return "\n".join(lines) + "\n" + "".join(docs)


# --- from the plan ---------------------------------------------------------------------------------


def _resources(plan: Any) -> tuple[str, list[dict[str, Any]]]:
    """(stack, resources as JSON-contract dicts) of an infra.plan.Plan or its `as_json()`."""
    if isinstance(plan, Mapping):
        return plan["stack"], list(plan["resources"])
    return plan.stack, [r.as_json() for r in plan.resources]


def _name_of_urn(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def cluster_of_provider(provider_urn: str) -> str:
    """`...::k8s-aws` -> "aws" (ctx.kubernetes_provider's naming); any other provider keeps its logical name."""
    name = _name_of_urn(provider_urn)
    return name[len("k8s-"):] if name.startswith("k8s-") else name


def _minor(version: Any) -> str | None:
    match = re.match(r"^v?(\d+)\.(\d+)", str(version or ""))
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _cluster_versions(resources: list[dict[str, Any]]) -> dict[str, str | None]:
    """Kubernetes minor per provider URN: the EKS cluster or Magnum template in the provider's component."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for r in resources:
        by_parent.setdefault(r["parent"], []).append(r)
    versions: dict[str, str | None] = {}
    for r in resources:
        if r["type"] != "pulumi:providers:kubernetes":
            continue
        found = None
        for sibling in by_parent.get(r["parent"], []):
            if sibling["type"] == "aws:eks/cluster:Cluster":
                found = _minor(sibling["inputs"].get("version"))
            elif sibling["type"] == "openstack:containerinfra/clusterTemplate:ClusterTemplate":
                found = _minor((sibling["inputs"].get("labels") or {}).get("kube_tag"))
            if found:
                break
        versions[r["urn"]] = found
    return versions


def render(plan: Any) -> Rendered:
    """The plan's Kubernetes objects as manifests per cluster, its Helm releases, and what was skipped."""
    stack, resources = _resources(plan)
    versions = _cluster_versions(resources)
    clusters: dict[str, ClusterManifests] = {}
    releases: list[HelmRelease] = []
    skipped: list[str] = []
    for r in resources:
        if not r["type"].startswith("kubernetes:"):
            continue
        provider = r["provider"]
        if r["type"] == RELEASE_TYPE:
            releases.append(_release(r, cluster_of_provider(provider) if provider else "default"))
            continue
        match = _TYPE.match(r["type"])
        reason = None
        if match is None:
            reason = "not a Kubernetes object type"
        elif match["group"] in _NOT_OBJECT_GROUPS:
            reason = _NOT_OBJECT_GROUPS[match["group"]]
        elif match["kind"].endswith("Patch"):
            reason = "a server-side apply patch (a partial object)"
        elif match["kind"].endswith("List"):
            reason = "a list of objects"
        elif provider is None:
            reason = "no explicit provider, so no cluster (the plan check reports it)"
        if reason:
            skipped.append(f"{r['urn']}: {reason}")
            continue
        cm = clusters.get(provider)
        if cm is None:
            cm = clusters[provider] = ClusterManifests(cluster_of_provider(provider), provider, versions.get(provider))
        manifest, stand_ins = to_manifest(r, cm.kubernetes_version)
        cm.manifests.append(manifest)
        cm.urns.append(r["urn"])
        cm.stand_ins.extend(stand_ins)
    by_name: dict[str, ClusterManifests] = {}
    for cm in clusters.values():
        if cm.cluster in by_name:
            raise UserError(f"{stack}: two Kubernetes providers map to cluster {cm.cluster!r}: {by_name[cm.cluster].provider_urn}, {cm.provider_urn}")
        by_name[cm.cluster] = cm
    return Rendered(stack, dict(sorted(by_name.items())), releases, skipped)


def _release(r: dict[str, Any], cluster: str) -> HelmRelease:
    i = r["inputs"]
    return HelmRelease(
        cluster=cluster,
        urn=r["urn"],
        name=i.get("name") or r["name"],  # no name: Pulumi auto-names from the logical name
        chart=i.get("chart", ""),
        version=i.get("version"),
        repo=(i.get("repositoryOpts") or {}).get("repo"),
        namespace=i.get("namespace"),
        create_namespace=bool(i.get("createNamespace", False)),
        values=_sorted(i.get("values") or {}),
    )


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def api_version_of(type_token: str) -> tuple[str, str]:
    """`kubernetes:storage.k8s.io/v1:StorageClass` -> ("storage.k8s.io/v1", "StorageClass")."""
    match = _TYPE.match(type_token)
    if match is None:
        raise ValueError(f"{type_token!r} is not a Kubernetes object type")
    group, version = match["group"], match["version"]
    return (version if group == "core" else f"{group}/{version}"), match["kind"]


def to_manifest(r: Mapping[str, Any], kubernetes_version: str | None) -> tuple[dict[str, Any], list[StandIn]]:
    """One planned resource (JSON contract) -> (manifest, stand-ins used). The type token decides apiVersion and kind."""
    api_version, kind = api_version_of(r["type"])
    inputs = dict(r["inputs"])
    inputs.pop("apiVersion", None)
    inputs.pop("kind", None)
    metadata = dict(inputs.pop("metadata", None) or {})
    if not metadata.get("name"):
        # pulumi-kubernetes auto-names an object from its logical name (plus a random suffix at deploy time).
        metadata["name"] = r["name"]
    # Sorted below the top level: the engine's Struct maps have no stable order, the files should.
    manifest: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": _sorted(metadata)}
    manifest.update(sorted(_sorted(inputs).items()))
    try:
        schema = object_schema(kubernetes_version, api_version, kind) if kubernetes_version else None
    except UserError:
        schema = None  # a minor without bundled schemas: string stand-ins; validate() names the version
    label = "/".join(str(p) for p in (kind, metadata.get("namespace"), metadata.get("name")) if p)
    stand_ins: list[StandIn] = []
    defs = schema["$defs"] if schema else {}
    filled = _fill(manifest, schema, defs, (), lambda path, marker: stand_ins.append(StandIn(label, path, marker)))
    return filled, stand_ins


# --- schemas (the ones kubernetes-validate ships) and stand-ins -----------------------------------


def _schema_package() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        raise UserError("manifests need kubernetes-validate (the dev extras: `make install`)", exit_code=2) from None
    return kubernetes_validate


def supported_versions() -> list[str]:
    """Kubernetes minors kubernetes-validate has schemas for, e.g. ["1.25", ..., "1.37"]."""
    return sorted({_minor(v) for v in _schema_package().utils.all_versions()}, key=lambda v: tuple(int(x) for x in v.split(".")))


def schema_dir(kubernetes_version: str) -> str:
    """The strict schema directory of exactly this minor: no silent fallback to another version."""
    minor = _minor(kubernetes_version)
    versions = [v for v in _schema_package().utils.all_versions() if _minor(v) == minor]
    if not versions:
        supported = supported_versions()
        raise UserError(
            f"kubernetes-validate {_schema_package().__version__} has no schemas for Kubernetes {kubernetes_version}; "
            f"it has {supported[0]} to {supported[-1]}"
        )
    return f"v{versions[-1]}-local-strict"


@functools.lru_cache(maxsize=None)
def _load(directory: str, filename: str) -> Any:
    import importlib.resources

    ref = importlib.resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", directory, filename)
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def object_schema(kubernetes_version: str, api_version: str, kind: str) -> dict[str, Any] | None:
    """The JSON schema of a kind as kubernetes-validate names its files (None: no schema, e.g. a custom resource)."""
    directory = schema_dir(kubernetes_version)
    # kubernetes-validate's file naming: storage.k8s.io/v1 -> storage-v1
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _load(directory, f"{kind.lower()}-{api}.json")
    if schema is None:
        return None
    return {"$defs": _load(directory, "_definitions.json")["$defs"], **schema}


def _resolve(schema: Mapping[str, Any] | None, defs: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while schema and "$ref" in schema and seen < 50:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return schema or {}


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _fill(value: Any, schema: Mapping[str, Any] | None, defs: Mapping[str, Any], path: tuple, record) -> Any:
    """`value` with every placeholder replaced by the stand-in for the schema node it sits at."""
    node = _resolve(schema, defs)
    if isinstance(value, str) and value in STAND_IN_TEXT:
        record(".".join(str(p) for p in path), value)
        return stand_in(node, defs, value)
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {k: _fill(v, props.get(k, extra if isinstance(extra, dict) else None), defs, (*path, k), record) for k, v in value.items()}
    if isinstance(value, list):
        items = node.get("items") if isinstance(node.get("items"), dict) else None
        return [_fill(v, items, defs, (*path, i), record) for i, v in enumerate(value)]
    return value


def stand_in(schema: Mapping[str, Any], defs: Mapping[str, Any], marker: str, depth: int = 0) -> Any:
    """The minimal value valid for `schema` that stands in for `marker` (see the module docstring)."""
    schema = _resolve(schema, defs)
    text = STAND_IN_TEXT[marker]
    if "oneOf" in schema:  # IntOrString, Quantity: the first form (a string)
        return stand_in(schema["oneOf"][0], defs, marker, depth)
    if schema.get("enum"):
        return schema["enum"][0]
    types = [t for t in _types(schema) if t != "null"]
    kind = types[0] if types else ("object" if "properties" in schema or "additionalProperties" in schema else "string")
    if depth > 20:
        return text
    if kind == "object":
        extra = schema.get("additionalProperties")
        if "properties" in schema:
            return {k: stand_in(schema["properties"][k], defs, marker, depth + 1) for k in schema.get("required", [])}
        if isinstance(extra, dict):
            return {text: stand_in(extra, defs, marker, depth + 1)}
        return {}
    if kind == "array":
        return [stand_in(schema.get("items", {}), defs, marker, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "integer" or kind == "number":
        return max(0, schema.get("minimum", 0))
    if kind == "boolean":
        return False
    fmt = schema.get("format")
    if fmt == "byte":
        return base64.b64encode(text.encode()).decode()
    if fmt == "date-time":
        return "1970-01-01T00:00:00Z"
    return text


# --- validation ----------------------------------------------------------------------------------


# Custom resources the kit writes, validated against schemas kept in infra/schemas/ (strict, like the rest).
CUSTOM_SCHEMAS: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}


@functools.lru_cache(maxsize=None)
def _custom_schema(filename: str) -> dict[str, Any]:
    return json.loads((Path(__file__).resolve().parent / "schemas" / filename).read_text(encoding="utf-8"))


def _validate_custom(m: Mapping[str, Any], label: str) -> list[str]:
    import jsonschema

    schema = _custom_schema(CUSTOM_SCHEMAS[(m.get("apiVersion"), m.get("kind"))])
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(dict(m)), key=lambda e: list(e.path))
    return [f"{label}: {'.'.join(str(p) for p in e.path) or '(top level)'}: {e.message}" for e in errors]


def validate(manifests: Iterable[Mapping[str, Any]], kubernetes_version: str) -> list[str]:
    """Problems of the manifests against the strict official schemas of that Kubernetes minor ([] = valid).

    Strict: a field the schema does not know (a misspelling) is a problem. A custom resource is checked
    against the kit's schema of it (CUSTOM_SCHEMAS); any other kind without a schema is a problem too:
    it cannot be said to be valid.
    """
    kv = _schema_package()
    schema_dir(kubernetes_version)  # exactly this minor, or a UserError
    problems = []
    for m in manifests:
        label = "/".join(str(p) for p in (m.get("kind"), (m.get("metadata") or {}).get("namespace"), (m.get("metadata") or {}).get("name")) if p)
        if (m.get("apiVersion"), m.get("kind")) in CUSTOM_SCHEMAS:
            problems.extend(_validate_custom(m, label))
            continue
        try:
            kv.validate(dict(m), _minor(kubernetes_version), strict=True)
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top level)"
            problems.append(f"{label}: {where}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            problems.append(f"{label}: {exc.message}")
    return problems
