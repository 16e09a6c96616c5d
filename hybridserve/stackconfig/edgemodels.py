"""What each edge site serves, judged against the model repository (issue 15, part 3).

An edge site chooses per model the full model or a compressed variant (`hybridserve:sites[i].models.<model>`,
schema/sites.py). The schema alone cannot tell whether the variant exists: that is the repository's. Here:

- `site_problems`: the chosen variant must be a model of the repository whose config.pbtxt says
  `variant_of: <model>`, and its accuracy drop within the site's `max_accuracy_drop`: the drop its build
  measured against the base, or, not built yet, the bound its config records (the build refuses beyond it). `hybridserve validate` and the program report these (exit 2).
- `served_models`: the names a site's hosts load (the variant's name, or the model's for "full").
- `gate_slos`: the per-host gate spec (smoke_tests --slos) from the site's per-model `slo`.

No torch here: configs and build stamps are read, nothing is run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hybridserve.stackconfig.schema.sites import EdgeSite
from hybridserve.stackconfig.schema.stack import StackConfig, format_loc

MODEL_REPO_ENV = "HYBRIDSERVE_MODEL_REPO"  # where the program and `validate` read the model repository


def model_repository() -> Path:
    from hybridserve.paths import model_repo_dir

    env = os.environ.get(MODEL_REPO_ENV)
    return Path(env).resolve() if env else model_repo_dir()


def _repository_models(repo: Path) -> list[str]:
    if not repo.is_dir():
        return []
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file() and not p.name.startswith((".", "__")))


def cluster_models(repo: Path) -> list[str]:
    """The models the clusters load, and their smoke gate measures, when serving.models is empty: every model of
    the repository but the compressed variants (infra/components/serving.py `_prepare`)."""
    from hybridserve.models.variants import base_models

    return base_models(repo, _repository_models(repo))


def repository_gate_time_issues(config: StackConfig, repo: Path | None = None) -> tuple[Any, Any] | None:
    """(error, warning) Issues of the smoke gate's time judged on the repository's models, for a stack whose
    serving.models is empty (the schema, which does not read the repository, counts one model for it); None when
    the schema's judgement stands (models listed, or fewer than two in the repository). Shared by `validate` /
    `plan --stack` and the program, which must agree."""
    if config.serving.models:
        return None
    models = cluster_models(repo if repo is not None else model_repository())
    if len(models) < 2:
        return None
    return config.serving.gate_time_issues(models)


def hub_kind(config: StackConfig, site: EdgeSite) -> str:
    """Which hub's published repository the site's hosts fill from: AWS when the site is linked to it, else OpenStack."""
    kinds = {s.name: s.kind for s in config.sites if s.kind in ("aws", "openstack")}
    linked = {kinds.get(link.to) for link in site.links}
    return "aws" if "aws" in linked else "openstack"


def aws_linked_edge_sites(config: StackConfig) -> list[EdgeSite]:
    """The edge sites that read from the AWS hub (their IAM readers are in the stack key's policy)."""
    return [site for _, site in config.edge_sites() if hub_kind(config, site) == "aws"]


def site_problems(config: StackConfig, repo: Path, source: str = "config") -> list[str]:
    """Every edge site's model choice that the repository at `repo` cannot serve, one line each."""
    from hybridserve.models.variants import base_models, find_variants

    problems: list[str] = []
    present = _repository_models(repo)
    bases = base_models(repo, present)
    for index, site in config.edge_sites():
        for model, choice in site.models.items():
            loc = ("sites", index, "models", model)
            if model not in bases:
                problems.append(f"{source}: {format_loc(loc)}: {model!r} is not a model of {repo} (its models: {', '.join(bases) or 'none'})")
                continue
            if choice.variant == "full":
                continue
            where = f"{source}: {format_loc((*loc, 'variant'))}"
            variants = {v.variant.name: v for v in find_variants(repo, model)}
            if choice.variant not in variants:
                known = ", ".join(sorted(variants)) or "none"
                if choice.variant in present:
                    why = f"{choice.variant!r} is a model of {repo} but not a variant of {model!r} (its config.pbtxt has no variant_of: {model})"
                else:
                    why = f"{choice.variant!r} is not in {repo}"
                problems.append(f"{where}: {why}; {model}'s variants: {known} (make one: hybridserve models compress {model} --method int8-dynamic), or use full")
                continue
            info = variants[choice.variant]
            if info.accuracy is None or info.accuracy.get("drop") is None:
                # Not built yet (a fresh checkout: built weights are not committed). The build refuses a variant
                # beyond the bound its config records, so that bound is a guarantee without building.
                bound = info.variant.max_accuracy_drop
                if bound > choice.max_accuracy_drop:
                    problems.append(
                        f"{where}: {choice.variant!r} is not built and its config.pbtxt allows an accuracy drop of {bound:g}, more than "
                        f"the site's max_accuracy_drop {choice.max_accuracy_drop:g}; build it to measure the drop (hybridserve models build), "
                        f"or make it with --max-accuracy-drop {choice.max_accuracy_drop:g}")
                continue
            drop = float(info.accuracy["drop"])
            if drop > choice.max_accuracy_drop:
                problems.append(
                    f"{where}: {choice.variant!r} drops {info.variant.metric} accuracy by {drop:.6g} against {model}, more than the site's "
                    f"max_accuracy_drop {choice.max_accuracy_drop:g}; choose another variant, raise the bound, or use full")
    return problems


def served_models(site: EdgeSite, repo: Path) -> list[str]:
    """The models the site's hosts load: per chosen model its variant's name (the model's own for full);
    a site that chooses nothing serves every base model of the repository, full."""
    from hybridserve.models.variants import base_models

    if not site.models:
        return base_models(repo, _repository_models(repo))
    return [model if choice.variant == "full" else choice.variant for model, choice in site.models.items()]


def gate_slos(site: EdgeSite) -> dict[str, Any]:
    """The per-host gate spec (smoke_tests --slos), keyed by the served name; None entries are left out."""
    slos: dict[str, Any] = {}
    for model, choice in site.models.items():
        s = choice.slo
        entry = {"max_p99_ms": s.max_p99_ms, "p99_concurrency": s.concurrency, "max_error_rate": s.max_error_rate}
        if s.min_throughput is not None:
            entry.update(min_throughput=s.min_throughput, throughput_concurrency=s.concurrency)
        slos[model if choice.variant == "full" else choice.variant] = entry
    return {"slos": slos} if slos else {}
