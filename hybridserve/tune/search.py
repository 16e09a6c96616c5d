"""What `models tune` searches and how: candidates, their space for the cores available, the scoring
against the p99 objective, and a coordinate descent bounded in time and in candidates.

Pure logic (no server, no clock of its own): `coordinate_descent` takes the measure function and the
clock, so tests drive it with fakes, and the command with the real measurement (hybridserve.tune.measure).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace

# The dimensions, in the order the descent visits them: where the instances run first (the largest
# effect on CPU), then how batches form.
DIMENSIONS = ("placement", "preferred_batch_sizes", "max_queue_delay_us")
QUEUE_DELAYS_US = (0, 500, 2000, 8000)
MAX_INSTANCES = 4  # more Python-backend stubs than that only adds processes contending for the same cores


@dataclass(frozen=True, order=True)
class Candidate:
    """One serving configuration: the fields `models tune` changes in config.pbtxt."""

    instances: int  # instance_group count
    threads: int  # torch intra-op threads per instance (parameter torch_num_threads)
    max_queue_delay_us: int  # dynamic_batching.max_queue_delay_microseconds
    preferred_batch_sizes: tuple[int, ...]  # dynamic_batching.preferred_batch_size ([] : Triton forms the largest it can)

    @property
    def key(self) -> str:
        """Canonical text of the candidate: the results file's key."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preferred_batch_sizes"] = list(self.preferred_batch_sizes)
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "Candidate":
        return cls(
            instances=int(data["instances"]),
            threads=int(data["threads"]),
            max_queue_delay_us=int(data["max_queue_delay_us"]),
            preferred_batch_sizes=tuple(int(b) for b in data["preferred_batch_sizes"]),
        )

    def describe(self) -> str:
        pbs = ",".join(map(str, self.preferred_batch_sizes)) or "-"
        return f"{self.instances}x{self.threads} thr, delay {self.max_queue_delay_us} us, preferred [{pbs}]"

    def value(self, dimension: str):
        if dimension == "placement":
            return (self.instances, self.threads)
        return getattr(self, dimension)

    def with_value(self, dimension: str, value) -> "Candidate":
        if dimension == "placement":
            return replace(self, instances=value[0], threads=value[1])
        return replace(self, **{dimension: value})


@dataclass(frozen=True)
class Level:
    """One measured concurrency level of a candidate."""

    concurrency: int
    throughput: float  # inferences/s
    p99_ms: float | None
    errors: int = 0
    stable: bool = True

    def to_dict(self) -> dict:
        return {"concurrency": self.concurrency, "throughput": round(self.throughput, 2),
                "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3), "errors": self.errors,
                "stable": self.stable}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Level":
        return cls(int(d["concurrency"]), float(d["throughput"]), None if d.get("p99_ms") is None else float(d["p99_ms"]),
                   int(d.get("errors", 0)), bool(d.get("stable", True)))


@dataclass(frozen=True)
class Objective:
    """The p99 objective a candidate must meet: `max_p99_ms` at `p99_concurrency` (None: at each level it is
    credited for), errors not allowed. No `max_p99_ms`: every candidate that serves without errors meets it."""

    max_p99_ms: float | None = None
    p99_concurrency: int | None = None

    def describe(self) -> str:
        if self.max_p99_ms is None:
            return "no p99 objective: the highest throughput wins"
        at = f" at concurrency {self.p99_concurrency}" if self.p99_concurrency else ""
        return f"p99 <= {self.max_p99_ms:g} ms{at}"

    def level_ok(self, lv: Level) -> bool:
        if lv.errors or lv.p99_ms is None:
            return False
        if self.max_p99_ms is None or self.p99_concurrency is not None:
            return True
        return lv.p99_ms <= self.max_p99_ms


@dataclass
class Result:
    """A measured candidate. `error`: it could not be loaded or served correctly (never the best)."""

    candidate: Candidate
    levels: list[Level] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    resumed: bool = False  # read from the results file, not measured in this run

    def best_level(self, objective: Objective) -> Level | None:
        """The level the candidate is credited with: the highest throughput among those meeting the objective."""
        ok = [lv for lv in self.levels if objective.level_ok(lv)]
        return max(ok, key=lambda lv: lv.throughput) if ok else None

    def meets(self, objective: Objective) -> bool:
        if self.error or self.best_level(objective) is None:
            return False
        if objective.max_p99_ms is not None and objective.p99_concurrency is not None:
            at = [lv for lv in self.levels if lv.concurrency == objective.p99_concurrency]
            return bool(at) and not at[0].errors and at[0].p99_ms is not None and at[0].p99_ms <= objective.max_p99_ms
        return True

    def shown_level(self, objective: Objective) -> Level | None:
        """For the table: the credited level, else the highest-throughput level measured."""
        return self.best_level(objective) or (max(self.levels, key=lambda lv: lv.throughput) if self.levels else None)

    def score(self, objective: Objective) -> tuple[int, float]:
        """Higher is better: meeting the objective first, then throughput at the credited level."""
        lv = self.best_level(objective)
        return (1 if self.meets(objective) else 0, lv.throughput if lv is not None and not self.error else 0.0)

    def to_record(self) -> dict:
        return {"kind": "result", "key": self.candidate.key, "candidate": self.candidate.to_dict(),
                "levels": [lv.to_dict() for lv in self.levels], "error": self.error,
                "duration_s": round(self.duration_s, 2)}

    @classmethod
    def from_record(cls, record: Mapping) -> "Result":
        return cls(Candidate.from_dict(record["candidate"]), [Level.from_dict(x) for x in record.get("levels", [])],
                   record.get("error"), float(record.get("duration_s", 0.0)), resumed=True)


# --------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Space:
    """The values tried per dimension (each includes the baseline's)."""

    placement: tuple[tuple[int, int], ...]
    preferred_batch_sizes: tuple[tuple[int, ...], ...]
    max_queue_delay_us: tuple[int, ...]

    def values(self, dimension: str) -> tuple:
        return getattr(self, dimension)

    def size(self) -> int:
        return len(self.placement) * len(self.preferred_batch_sizes) * len(self.max_queue_delay_us)


def _powers_of_two(lo: int, hi: int) -> list[int]:
    out, v = [], lo
    while v <= hi:
        out.append(v)
        v *= 2
    return out


def build_space(baseline: Candidate, *, cpus: int, max_batch_size: int) -> Space:
    """The search space pruned by the cores: instances x threads never exceed `cpus` (more would only
    time-slice the same cores), instances <= MAX_INSTANCES; batching dimensions only when the model batches."""
    cpus = max(1, cpus)
    placement = {(baseline.instances, baseline.threads)}
    for instances in range(1, min(cpus, MAX_INSTANCES) + 1):
        for threads in _powers_of_two(1, cpus):
            if instances * threads <= cpus:
                placement.add((instances, threads))
    if max_batch_size > 1:
        preferred = {baseline.preferred_batch_sizes, ()}
        sizes = _powers_of_two(4, max_batch_size)
        preferred.update((s,) for s in sizes)
        if len(sizes) >= 2:
            preferred.add(tuple(sizes[-3:-1]) if len(sizes) >= 3 else tuple(sizes[-2:]))  # two sizes below the max
        delays = set(QUEUE_DELAYS_US) | {baseline.max_queue_delay_us}
    else:
        preferred, delays = {baseline.preferred_batch_sizes}, {baseline.max_queue_delay_us}
    return Space(
        placement=tuple(sorted(placement)),
        preferred_batch_sizes=tuple(sorted(preferred, key=lambda p: (len(p), p))),
        max_queue_delay_us=tuple(sorted(delays)),
    )


# --------------------------------------------------------------------------------------------- the search


@dataclass
class SearchOutcome:
    results: list[Result]  # every candidate considered in this run, in the order visited (resumed ones included)
    best: Result | None  # the best that meets the objective, None when none does
    stopped: str  # why the search ended: "converged", "budget", "max-candidates"


class _Stop(Exception):
    def __init__(self, why: str):
        self.why = why


def coordinate_descent(
    baseline: Candidate,
    space: Space,
    measure: Callable[[Candidate], Result],
    objective: Objective,
    *,
    budget_s: float,
    max_candidates: int,
    known: Mapping[str, Result] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_result: Callable[[Result], None] | None = None,
    on_start: Callable[[Candidate, int], None] | None = None,
) -> SearchOutcome:
    """Coordinate descent from `baseline`: per dimension, try every value with the others at the current
    best, move to the best of them; repeat the passes until one changes nothing.

    Bounds: the baseline is always measured (it is the comparison); after it, a candidate starts only when
    the time used plus the mean time of a candidate so far fits in `budget_s`, and while fewer than
    `max_candidates` were measured in this run. Candidates in `known` (the results file of an earlier
    run, keyed by `Candidate.key`) are reused, not measured, and cost nothing.
    """
    known = dict(known or {})
    start = clock()
    measured: list[float] = []
    seen: dict[str, Result] = {}
    order: list[Result] = []

    def evaluate(c: Candidate, first: bool = False) -> Result:
        if c.key in seen:
            return seen[c.key]
        if c.key in known:
            r = known[c.key]
        else:
            if not first:
                if len(measured) >= max_candidates:
                    raise _Stop("max-candidates")
                mean = sum(measured) / len(measured) if measured else 0.0
                if clock() - start + mean > budget_s:
                    raise _Stop("budget")
            if on_start is not None:
                on_start(c, len(measured) + 1)
            t0 = clock()
            r = measure(c)
            r.duration_s = r.duration_s or (clock() - t0)
            measured.append(clock() - t0)
            if on_result is not None:
                on_result(r)
        seen[c.key] = r
        order.append(r)
        return r

    def better(a: Result, b: Result) -> bool:
        return a.score(objective) > b.score(objective)

    current = evaluate(baseline, first=True)
    stopped = "converged"
    try:
        changed = True
        while changed:
            changed = False
            for dim in DIMENSIONS:
                best_here = current
                for value in space.values(dim):
                    r = evaluate(current.candidate.with_value(dim, value))
                    if better(r, best_here):
                        best_here = r
                if best_here is not current:
                    current, changed = best_here, True
    except _Stop as stop:
        stopped = stop.why
    return SearchOutcome(order, best_of(order, objective), stopped)


def best_of(results: Iterable[Result], objective: Objective) -> Result | None:
    ok = [r for r in results if r.meets(objective)]
    return max(ok, key=lambda r: r.score(objective)) if ok else None
