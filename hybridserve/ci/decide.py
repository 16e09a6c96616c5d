"""The decisions of the CI stages, as pure functions: no git, no Pulumi, no cloud (tests/test_ci.py).

- which stacks a change touches (`touched_stacks`), and in what order they deploy (`order_stacks`, `waves`);
- which published model version is known to have passed its gate (`known_good`), and what a failed
  `pulumi up` means: the gate failed (roll back) or something else did (fail without touching the model)
  (`failed_steps`, `gate_failures`, `after_failed_up`);
- whether a refresh-preview shows drift (`drift_verdict`);
- one deployment per stack at a time (`concurrency_group`: the name every CI system locks on).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from hybridserve.stackconfig.loader import STACK_FILE_PREFIX, STACK_FILE_SUFFIX

# --------------------------------------------------------------------------------------------- what a change touches

STACKS_DIR = "stacks"
# The program and everything it reads at `pulumi up`: a change here may change every stack.
PROGRAM_PATHS = ("infra/", "hybridserve/", "model_repo/", "smoke_tests/")
PROGRAM_FILES = ("Pulumi.yaml", "pyproject.toml", "constraints.txt", "infra/requirements.txt")


@dataclass(frozen=True)
class Touched:
    """What a change touches: `stacks` to deploy (ordered), `removed` stack files (never deployed: a
    stack's resources are destroyed by a person, `pulumi destroy`), and why each stack is in."""

    stacks: list[str]
    removed: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"stacks": self.stacks, "removed": self.removed, "reasons": self.reasons, "matrix": github_matrix(self.stacks)}


def stack_of_path(path: str) -> str | None:
    """The stack a stack file names (stacks/Pulumi.<stack>.yaml), else None."""
    p = PurePosixPath(path)
    if p.parent.as_posix() != STACKS_DIR or not p.name.startswith(STACK_FILE_PREFIX) or not p.name.endswith(STACK_FILE_SUFFIX):
        return None
    name = p.name[len(STACK_FILE_PREFIX):-len(STACK_FILE_SUFFIX)]
    return name or None


def is_program_path(path: str) -> bool:
    return path in PROGRAM_FILES or any(path.startswith(prefix) for prefix in PROGRAM_PATHS)


def touched_stacks(changed: Iterable[str], existing: Mapping[str, str]) -> Touched:
    """The stacks a change touches. `changed`: paths relative to the repository root (git diff --name-only);
    `existing`: stack name -> environment, the stacks the head revision has.

    A stack file -> that stack; the program (PROGRAM_PATHS, PROGRAM_FILES) -> every stack; anything else
    (docs, README, tests, CI files) -> none. A changed stack file that the head no longer has is `removed`.
    """
    chosen: dict[str, str] = {}
    removed: list[str] = []
    program = [p for p in changed if is_program_path(p)]
    if program:
        for name in existing:
            chosen[name] = f"the program changed ({program[0]}{' and more' if len(program) > 1 else ''})"
    for path in changed:
        name = stack_of_path(path)
        if name is None:
            continue
        if name in existing:
            chosen.setdefault(name, f"its stack file changed ({path})")
        elif name not in removed:
            removed.append(name)
    ordered = order_stacks({n: existing[n] for n in chosen})
    return Touched(stacks=ordered, removed=sorted(removed), reasons={n: chosen[n] for n in ordered})


# --------------------------------------------------------------------------------------------- order

# Environments deploy in this order; one not listed goes between the listed ones (after staging, before
# prod): a new environment is never deployed before dev nor after prod.
ENVIRONMENT_ORDER = {"dev": 0, "development": 0, "test": 1, "qa": 1, "staging": 2, "stage": 2, "preprod": 3, "prod": 5, "production": 5}
UNKNOWN_RANK = 4
PROD_RANK = ENVIRONMENT_ORDER["prod"]  # this rank and above wait for an approval


def environment_rank(environment: str) -> int:
    return ENVIRONMENT_ORDER.get(environment.lower(), UNKNOWN_RANK)


def order_stacks(stacks: Mapping[str, str]) -> list[str]:
    """Stack names (name -> environment) dev first, prod last, ties by name."""
    return sorted(stacks, key=lambda name: (environment_rank(stacks[name]), name))


def waves(stacks: Mapping[str, str]) -> list[list[str]]:
    """The stacks grouped by environment rank, in deploy order: a wave starts when the one before it passed.
    Each stack is in exactly one wave (one deployment per stack per run)."""
    out: dict[int, list[str]] = {}
    for name in order_stacks(stacks):
        out.setdefault(environment_rank(stacks[name]), []).append(name)
    return [out[rank] for rank in sorted(out)]


def github_matrix(stacks: list[str]) -> dict[str, Any]:
    """GitHub Actions' `strategy.matrix` (fromJSON) over the stacks; an empty list is not a valid matrix,
    so callers skip the job when `stacks` is empty."""
    return {"stack": list(stacks)}


def concurrency_group(stack: str) -> str:
    """The lock name of a stack's deployments: GitHub's concurrency group, GitLab's resource_group,
    Jenkins' lock. Pulumi refuses a second concurrent update of a stack too; the CI lock queues it instead
    of failing it half-way."""
    return f"hybridserve-deploy-{stack}"


# The job template (image, tools, OIDC token, `make install`) lives in the repository, next to .gitlab-ci.yml.
GITLAB_TEMPLATE_FILE = ".gitlab/hybridserve.yml"
GITLAB_TEMPLATE = ".hybridserve"


def gitlab_child_pipeline(stacks: Mapping[str, str], *, stage: str = "deploy") -> dict[str, Any]:
    """A GitLab child pipeline running `hybridserve ci <stage>` per stack: a stage per wave (dev first), prod
    waves manual (`when: manual`, an environment to protect with approvals), `resource_group` per stack so a
    stack never runs two deployments at once. No stacks: one job that says so (GitLab refuses an empty pipeline)."""
    groups = waves(stacks)
    if not groups:
        return {"stages": ["none"], "nothing": {"stage": "none", "image": "busybox:stable", "script": ["echo 'no stack touched'"]}}
    doc: dict[str, Any] = {"include": [{"local": GITLAB_TEMPLATE_FILE}], "stages": [f"{stage}-{i + 1}" for i in range(len(groups))]}
    for i, wave in enumerate(groups):
        for name in wave:
            job: dict[str, Any] = {
                "extends": GITLAB_TEMPLATE,
                "stage": f"{stage}-{i + 1}",
                "resource_group": concurrency_group(name),
                "script": [f".venv/bin/hybridserve ci {stage} --stack {name}" + (" --reports reports" if stage == "deploy" else f" --json reports/{name}.drift.json")],
                "artifacts": {"when": "always", "paths": ["reports/"], "expire_in": "30 days"},
            }
            # The environment scopes the stack's variables (its AWS role); a drift check only verifies it.
            job["environment"] = {"name": name} if stage == "deploy" else {"name": name, "action": "verify"}
            if stage == "deploy":
                job["artifacts"]["reports"] = {"junit": "reports/*.junit.xml"}
                # A rollback pins the version in the stack file; keep it, to commit (as GitHub and Jenkins do).
                job["artifacts"]["paths"].append(f"stacks/Pulumi.{name}.yaml")
                if environment_rank(stacks[name]) >= PROD_RANK:
                    job["when"] = "manual"  # the approval: a person starts it (protect the environment too)
                    job["allow_failure"] = False
            doc[f"{stage} {name}"] = job
    return doc


# --------------------------------------------------------------------------------------------- known-good versions


@dataclass(frozen=True)
class KnownGood:
    """The model version each site served after the stack's last successful update: it passed its gate."""

    versions: dict[str, str]
    kept: dict[str, list[str]]
    # The edge sites' publications at the same time (their own rendering, so their own version names): what
    # serving.publication.edge_pins must pin along with `version`.
    edge_versions: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        """The one version every site serves (the sites publish the same content), else None."""
        values = set(self.versions.values())
        return values.pop() if len(values) == 1 else None

    def as_json(self) -> dict[str, Any]:
        return {"versions": self.versions, "kept": self.kept, "version": self.version, "edge_versions": self.edge_versions}


def edge_publications(outputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per edge publication, as the stack outputs say (edgeHosts.<site>.publication / gpuPublication: version, kept)."""
    edge = outputs.get("edgeHosts") or {}
    found = {}
    for site, entry in edge.items() if isinstance(edge, dict) else ():
        # The CPU rendering (key: the site) and the GPU hosts' one (key: <site>/gpu), as serving.publication.edge_pins names them.
        for key, output in ((site, "publication"), (f"{site}/gpu", "gpuPublication")):
            pub = entry.get(output) if isinstance(entry, dict) else None
            if isinstance(pub, dict) and isinstance(pub.get("version"), str):
                found[key] = {"version": pub["version"], "kept": [v for v in (pub.get("kept") or []) if isinstance(v, str)]}
    return found


def edge_pins(version: str, outputs: Mapping[str, Any], *, recorded: Mapping[str, str] | None = None,
              given: Mapping[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """The edge publication version each edge site pins along with the clusters' `version`, and why not when it
    cannot be told. Per site: `given` (--edge-version), else `recorded` (the deploy's known-good record), else the
    outputs' current edge version when the clusters' current version is `version` (they were published together)."""
    edge = edge_publications(outputs)
    current = {(p or {}).get("version") for p in (outputs.get("modelPublications") or {}).values() if isinstance(p, dict)}
    pins: dict[str, str] = {}
    unknown: list[str] = []
    problems: list[str] = []
    for site, pub in sorted(edge.items()):
        chosen = (given or {}).get(site) or (recorded or {}).get(site) or (pub["version"] if current == {version} else None)
        if chosen is None:
            unknown.append(site)
            continue
        if chosen not in pub["kept"]:
            problems.append(f"edge site {site}: {chosen} is not kept (kept: {', '.join(pub['kept']) or 'none'})")
        pins[site] = chosen
    stray = sorted(set(given or {}) - set(edge))
    if stray:
        problems.append(f"--edge-version {', '.join(stray)}: not an edge site of the stack outputs (edge sites: {', '.join(sorted(edge)) or 'none'})")
    if unknown:
        problems.append(
            f"which edge version goes with {version} on {', '.join(unknown)} is not known (the clusters serve {', '.join(sorted(v for v in current if v)) or 'nothing'} "
            "now); give --edge-version SITE=VERSION (one of edgeHosts.<site>.publication.kept) or --record from the deploy")
    return pins, "; ".join(problems) or None


def last_update_result(history: Any) -> str | None:
    """The result of the newest update in `pulumi stack history --json` ("succeeded", "failed", ...), else None."""
    if not isinstance(history, list):
        return None
    updates = [h for h in history if isinstance(h, dict) and h.get("kind", "update") == "update"]
    if not updates:
        return None
    newest = max(updates, key=lambda h: (h.get("version") or 0, h.get("startTime") or ""))
    result = newest.get("result")
    return result if isinstance(result, str) else None


def known_good(outputs: Mapping[str, Any], last_result: str | None) -> KnownGood | None:
    """The versions that passed their gate, from the stack outputs, or None when the outputs cannot say.

    The gate runs inside `pulumi up` and a failed gate fails the update; Pulumi (3.112+) replaces stack
    outputs only when an update succeeds, but a failed one may still leave some of them written
    (pulumi/pulumi#15754). So: only after a *succeeded* last update, and only sites whose gate verdict is
    "passed".
    """
    if last_result != "succeeded":
        return None
    publications = outputs.get("modelPublications") or {}
    gates = outputs.get("smokeGate") or {}
    versions: dict[str, str] = {}
    kept: dict[str, list[str]] = {}
    for site, pub in publications.items() if isinstance(publications, dict) else ():
        if not isinstance(pub, dict) or not isinstance(pub.get("version"), str):
            continue
        if ((gates.get(site) or {}) if isinstance(gates, dict) else {}).get("verdict") != "passed":
            return None
        versions[site] = pub["version"]
        kept[site] = [v for v in (pub.get("kept") or []) if isinstance(v, str)]
    # A succeeded update passed every edge host's gate too (a failed gate fails the update): their versions are good.
    edge = {site: pub["version"] for site, pub in edge_publications(outputs).items()}
    return KnownGood(versions, kept, edge) if versions else None


# --------------------------------------------------------------------------------------------- a failed up

GATE_JOB_TYPE = "kubernetes:batch/v1:Job"
# The pre-traffic candidate gate and the post-rollout smoke gate (infra/components/triton.py): either one failing
# is a verdict on the model version.
_GATE_RESOURCE = re.compile(r"^triton-(?P<site>[a-z]+)-(?:candidate-gate|smoke-gate)$")


@dataclass(frozen=True)
class FailedStep:
    urn: str
    type: str
    messages: list[str]

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def gate_site(self) -> str | None:
        """The site whose gate this is (infra/components/triton.py: triton-<site>-candidate-gate, triton-<site>-smoke-gate)."""
        if self.type != GATE_JOB_TYPE:
            return None
        match = _GATE_RESOURCE.match(self.name)
        return match.group("site") if match else None


def failed_steps(event_lines: Iterable[str]) -> tuple[list[FailedStep], dict[str, str]]:
    """From `pulumi up --event-log` (engine events, one JSON object a line): the resources whose operation
    failed, with their error diagnostics, and gate Job names by site (the Job's metadata.name as planned)."""
    failed: dict[str, str] = {}
    diags: dict[str, list[str]] = {}
    jobs: dict[str, str] = {}
    job_by_urn: dict[str, str] = {}
    for line in event_lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed CLI: the rest still counts
        if not isinstance(event, dict):
            continue
        if "resOpFailedEvent" in event:
            meta = (event["resOpFailedEvent"] or {}).get("metadata") or {}
            if meta.get("urn"):
                failed[meta["urn"]] = meta.get("type") or ""
        elif "diagnosticEvent" in event:
            diag = event["diagnosticEvent"] or {}
            if diag.get("severity") == "error" and diag.get("urn"):
                diags.setdefault(diag["urn"], []).append(str(diag.get("message") or "").strip())
        elif "resourcePreEvent" in event:
            meta = (event["resourcePreEvent"] or {}).get("metadata") or {}
            step = FailedStep(meta.get("urn") or "", meta.get("type") or "", [])
            site = step.gate_site
            new = meta.get("new") or {}
            name = (((new.get("outputs") or {}).get("metadata") or {}).get("name")
                    or ((new.get("inputs") or {}).get("metadata") or {}).get("name"))
            if site and isinstance(name, str):
                jobs[site] = name
                job_by_urn[step.urn] = name
    # A failure without a resOpFailedEvent (e.g. a provider error) still names its resource in a diagnostic.
    for urn in diags:
        failed.setdefault(urn, urn.split("::")[-2].rsplit("$", 1)[-1] if urn.count("::") >= 3 else "")
    steps = [FailedStep(urn, type_, [m for m in diags.get(urn, []) if m]) for urn, type_ in failed.items()]
    # A site has two gate Jobs; the report to read is the failed one's (a failed candidate stops the rollout, so
    # the post-rollout gate may be planned but never run).
    for s in steps:
        if s.gate_site and s.urn in job_by_urn:
            jobs[s.gate_site] = job_by_urn[s.urn]
    return steps, jobs


@dataclass(frozen=True)
class AfterUp:
    """What to do after `pulumi up`: nothing (passed), roll back to `version`, or fail as is.

    `reason`: the sentence the stage fails with (None when it passed)."""

    action: str  # "passed" | "rollback" | "fail"
    reason: str | None = None
    version: str | None = None
    gate_sites: list[str] = field(default_factory=list)


def after_up(up_code: int, steps: list[FailedStep], good: KnownGood | None, gate_reports: Mapping[str, Mapping[str, Any] | None]) -> AfterUp:
    """The decision after `pulumi up` exited `up_code`.

    - exit 0 and every gate report passed: passed.
    - a gate failed (its Job's step failed, or its report says failed): roll back to the known-good version
      when there is one; else fail ("nothing to roll back to").
    - anything else failed (a cloud API, a policy, the program): fail without rolling back; the model
      was not judged, and a rollback `up` would hit the same error.
    """
    gate_failed = sorted({s.gate_site for s in steps if s.gate_site} | {site for site, r in gate_reports.items() if r is not None and not r.get("passed")})
    others = [s for s in steps if not s.gate_site and s.type != "pulumi:pulumi:Stack"]
    program = [m for s in steps if s.type == "pulumi:pulumi:Stack" for m in s.messages]
    if up_code == 0 and not gate_failed:
        return AfterUp("passed")
    if others:
        first = others[0]
        why = first.messages[0] if first.messages else "see the pulumi up log"
        extra = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        return AfterUp("fail", f"pulumi up failed at {first.type} {first.name}{extra}: {why}; not a gate verdict, so no rollback")
    if not gate_failed:
        why = program[0] if program else "see its log"
        return AfterUp("fail", f"pulumi up exited {up_code} before any resource failed (the program, a policy or the backend): {why}")
    verdicts = []
    for site in gate_failed:
        report = gate_reports.get(site)
        violations = [v.get("message") for v in ((report or {}).get("violations") or []) if isinstance(v, dict)]
        verdicts.append(f"{site}: {violations[0] if violations else 'failed (no report read)'}")
    why = "the smoke gate failed (" + "; ".join(verdicts) + ")"
    if good is None:
        return AfterUp("fail", f"{why}; no earlier model version is known to have passed its gate, nothing to roll back to", gate_sites=gate_failed)
    if good.version is None:
        served = ", ".join(f"{site}: {v}" for site, v in sorted(good.versions.items()))
        return AfterUp("fail", f"{why}; the sites last passed with different versions ({served}) and one pin serves both, "
                       "so nothing was rolled back: `hybridserve ci rollback --version` after a look", gate_sites=gate_failed)
    return AfterUp("rollback", f"{why}; rolled back to {good.version}", version=good.version, gate_sites=gate_failed)


def rollback_problem(version: str, outputs: Mapping[str, Any]) -> str | None:
    """Why `version` cannot be pinned, judged from the stack outputs (each site keeps its versions in
    `modelPublications.<site>.kept`, what the publication's bucket holds), else None."""
    from hybridserve.publish.digest import VERSION_PATTERN

    if not VERSION_PATTERN.fullmatch(version or ""):
        return f"{version!r} is not a published version name (v + 16 hex digits, e.g. from `pulumi stack output modelPublications`)"
    publications = outputs.get("modelPublications") or {}
    if not publications:
        return "the stack has no output modelPublications: has `pulumi up` ever published the models?"
    missing = [f"{site} (kept: {', '.join(p.get('kept') or []) or 'none'})" for site, p in sorted(publications.items())
               if version not in ((p or {}).get("kept") or [])]
    if missing:
        return f"{version} is no longer kept on {', '.join(missing)}; serving.publication.keep_versions decides how many are kept"
    return None


# --------------------------------------------------------------------------------------------- drift

# 2 stays the kit's "bad input" (an unknown stack, a missing CLI), raised before pulumi runs.
DRIFT_EXIT = {"none": 0, "drift": 1, "error": 3}


@dataclass(frozen=True)
class Drift:
    status: str  # "none" | "drift" | "error"
    changes: dict[str, int] = field(default_factory=dict)
    resources: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def exit_code(self) -> int:
        return DRIFT_EXIT[self.status]

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "changes": self.changes, "resources": self.resources, "message": self.message}


def drift_verdict(code: int, stdout: str, stderr: str = "") -> Drift:
    """`pulumi preview --refresh --expect-no-changes --json` -> drift, no drift, or error.

    The JSON's changeSummary counts operations; anything but "same" is drift (the refreshed state differs from
    what the program declares). --expect-no-changes makes the CLI exit non-zero on changes too, so the exit
    code alone cannot tell drift from an error: no parsable JSON, or error diagnostics, is an error.
    """
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        doc = None
    tail = " ".join((stderr or stdout).strip().splitlines()[-3:])
    if not isinstance(doc, dict):
        return Drift("error", message=f"pulumi preview exited {code} without a JSON result: {tail or 'no output'}")
    errors = [d.get("message", "").strip() for d in doc.get("diagnostics") or [] if isinstance(d, dict) and d.get("severity") == "error"]
    summary = {k: int(v) for k, v in (doc.get("changeSummary") or {}).items() if isinstance(v, (int, float))}
    changes = {k: v for k, v in summary.items() if k != "same" and v}
    resources = [s.get("urn", "") for s in doc.get("steps") or [] if isinstance(s, dict) and s.get("op") not in (None, "same", "read")]
    if changes:
        return Drift("drift", changes, resources, "the stack differs from its program: " + ", ".join(f"{n} to {op}" for op, n in sorted(changes.items())))
    if code != 0 or errors:
        # --expect-no-changes prints its own error diagnostic when there are changes; with none counted, it is a real error.
        return Drift("error", message=(errors[0] if errors else f"pulumi preview exited {code}: {tail}"))
    return Drift("none", message="no drift")
