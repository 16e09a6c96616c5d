"""`SmokeReport`: the outcome of one run, its terminal tables, and its files (JSON, JUnit XML, CSV, PNG).

- terminal: `render()` (rich) or `to_text()` (plain text, the same tables, where rich is not installed).
- JSON: `to_dict()`, schema in `smoke_tests/report.schema.json` (id "hybridserve.smoke/v1"); `report_line()`
  is the one-line form `--json -` prints to stdout, `extract_report()` reads it back from a log.
- JUnit XML: one <testsuite> per model (readiness, correctness, one case per SLO figure) plus "endpoint".
- CSV: perf_analyzer's `-f` columns first, in its units (microseconds, inferences/s), one row per model
  and concurrency (sorted by model, then concurrency), then extra columns perf_analyzer has not.
- PNG: per model, throughput and p99 latency against concurrency (unstable points hollow, saturation marked).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from smoke_tests.errors import ExitCode, bad_input
from smoke_tests.results import SCHEMA_ID, ModelReport, RunError, RunInfo, Violation, exit_code_of

# perf_analyzer's CSV header (`perf_analyzer -f FILE`), in its order and units.
PERF_ANALYZER_COLUMNS = [
    "Concurrency",
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
    "Avg latency",
]
EXTRA_COLUMNS = [
    "Model",
    "Model Version",
    "Batch Size",
    "Stable",
    "Windows",
    "Requests",
    "Errors",
    "Error Rate",
    "Server Avg Batch Size",
    "Server Executions",
    "Server Utilization",
    "Server Host CPU",
    "Client CPU Cores",
]
CSV_COLUMNS = PERF_ANALYZER_COLUMNS + EXTRA_COLUMNS


@dataclass
class SmokeReport:
    info: RunInfo
    models: list[ModelReport] = field(default_factory=list)
    error: RunError | None = None  # a fatal error that ended the run early

    # -- verdict ------------------------------------------------------------------------------------

    @property
    def violations(self) -> list[Violation]:
        """Every failed check, one line each (readiness, interface, correctness, SLO; a fatal error first)."""
        out = []
        if self.error is not None:
            out.append(Violation(self.error.model, "endpoint", "endpoint", self.error.message, self.error.exit_code))
        for m in self.models:
            out.extend(m.violations)
        return out

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_of(self.models, self.error)

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.PASSED and bool(self.models)

    def model(self, name: str) -> ModelReport:
        return next(m for m in self.models if m.name == name)

    # -- JSON ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_ID,
            "passed": self.passed,
            "exit_code": int(self.exit_code),
            "run": self.info.to_dict(),
            "error": self.error.to_dict() if self.error else None,
            "violations": [v.to_dict() for v in self.violations],
            "models": [m.to_dict() for m in self.models],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def write_json(self, path: Path) -> Path:
        return _write(path, self.to_json() + "\n")

    # -- JUnit --------------------------------------------------------------------------------------

    def to_junit(self) -> str:
        import xml.etree.ElementTree as ET

        root = ET.Element("testsuites", name="hybridserve smoke")
        suites = []

        def suite(name: str):
            s = ET.SubElement(root, "testsuite", name=name)
            suites.append(s)
            return s

        def case(s, name: str, *, failure: str | None = None, error: str | None = None, skipped: str | None = None,
                 out: str | None = None, seconds: float = 0.0):
            c = ET.SubElement(s, "testcase", classname=s.get("name"), name=name, time=f"{seconds:.3f}")
            if failure is not None:
                ET.SubElement(c, "failure", message=failure[:500], type="failure").text = failure
            if error is not None:
                ET.SubElement(c, "error", message=error[:500], type="error").text = error
            if skipped is not None:
                ET.SubElement(c, "skipped", message=skipped)
            if out:
                ET.SubElement(c, "system-out").text = out

        ep = suite("smoke.endpoint")
        ep_msg = None
        if self.error is not None and self.error.exit_code == ExitCode.UNREACHABLE:
            ep_msg = self.error.message
        case(ep, f"reachable {self.info.protocol}://{self.info.url}", error=ep_msg,
             out=f"server version {self.info.server_version}" if self.info.server_version else None)
        if self.error is not None and self.error.exit_code != ExitCode.UNREACHABLE:
            case(ep, "run", error=self.error.message)

        names = [m.name for m in self.models]
        for m in self.models:
            s = suite(f"smoke.{m.name}" if names.count(m.name) == 1 else f"smoke.{m.name}.v{m.version}")
            by_metric: dict[str, list[Violation]] = {}
            for v in m.violations:
                by_metric.setdefault(v.metric, []).append(v)
            ready_v = by_metric.get("ready")
            case(s, "ready", failure="; ".join(v.message for v in ready_v) if ready_v else None,
                 out=f"version {m.version} state {m.state}")
            c = m.correctness
            if c.status == "skipped":
                case(s, "correctness", skipped=c.message or "skipped")
            elif c.status == "passed":
                case(s, "correctness", out=f"{c.samples} reference samples within atol {c.atol}, rtol {c.rtol}")
            else:
                case(s, "correctness", failure=c.message or c.status)
            known = {"ready", "outputs", "interface", "min_throughput", "max_p99_ms", "max_error_rate", "stability"}
            # any other metric (batch_size, no_success) gets a case of its own
            for metric, vs in by_metric.items():
                if metric not in known:
                    case(s, metric.replace("_", " "), failure="\n".join(v.message for v in vs))
            if not m.sweep:
                case(s, "throughput", skipped=m.sweep_note or "not measured")
                continue
            table = "\n".join(
                f"c={lv.concurrency}: {lv.throughput:.1f} inf/s, p99 {lv.p99_ms or 0:.2f} ms, errors {lv.total_errors}, "
                f"{'stable' if lv.stable else 'unstable'}" for lv in m.sweep
            )
            for metric, label in (("min_throughput", "throughput"), ("max_p99_ms", "p99 latency"),
                                  ("max_error_rate", "error rate"), ("stability", "stability")):
                vs = by_metric.get(metric)
                configured = {
                    "min_throughput": m.slo.min_throughput is not None,
                    "max_p99_ms": m.slo.max_p99_ms is not None,
                    "max_error_rate": True,
                    "stability": bool(vs),
                }[metric]
                if not configured:
                    continue
                case(s, f"slo {label}", failure="\n".join(v.message for v in vs) if vs else None, out=table)
            case(s, "sweep", out=table + (f"\n{m.saturation.detail}" if m.saturation else ""))

        for s in suites:
            cases = s.findall("testcase")
            s.set("tests", str(len(cases)))
            s.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
            s.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
            s.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
        for key in ("tests", "failures", "errors", "skipped"):
            root.set(key, str(sum(int(s.get(key)) for s in suites)))
        root.set("time", f"{self.info.duration_s:.3f}")
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def write_junit(self, path: Path) -> Path:
        return _write(path, self.to_junit())

    # -- CSV ----------------------------------------------------------------------------------------

    def csv_rows(self) -> list[dict]:
        rows = []
        for m in sorted(self.models, key=lambda m: m.name):
            for lv in sorted(m.sweep, key=lambda lv: lv.concurrency):
                s = lv.server
                lat = lv.latency_us
                avg = lat.get("avg")
                server_parts = [s.queue_us, s.compute_input_us, s.compute_infer_us, s.compute_output_us]
                network = None
                if avg is not None:
                    network = max(0.0, avg - sum(p or 0.0 for p in server_parts))
                rows.append({
                    "Concurrency": lv.concurrency,
                    "Inferences/Second": round(lv.throughput, 2),
                    # The load generator encodes a request once and does not decode answers: no per-request
                    # client send/receive work to report.
                    "Client Send": 0,
                    "Network+Server Send/Recv": _us(network),
                    "Server Queue": _us(s.queue_us),
                    "Server Compute Input": _us(s.compute_input_us),
                    "Server Compute Infer": _us(s.compute_infer_us),
                    "Server Compute Output": _us(s.compute_output_us),
                    "Client Recv": 0,
                    "p50 latency": _us(lat.get("p50")),
                    "p90 latency": _us(lat.get("p90")),
                    "p95 latency": _us(lat.get("p95")),
                    "p99 latency": _us(lat.get("p99")),
                    "Avg latency": _us(avg),
                    "Model": m.name,
                    "Model Version": m.version or "",
                    "Batch Size": lv.batch_size,
                    "Stable": "true" if lv.stable else "false",
                    "Windows": lv.windows,
                    "Requests": lv.requests,
                    "Errors": lv.total_errors,
                    "Error Rate": f"{lv.error_rate:.6f}",
                    "Server Avg Batch Size": "" if s.avg_batch_size is None else f"{s.avg_batch_size:.3f}",
                    "Server Executions": s.execution_count,
                    "Server Utilization": "" if s.utilization is None else f"{s.utilization:.4f}",
                    "Server Host CPU": "" if s.host_cpu is None else f"{s.host_cpu:.4f}",
                    "Client CPU Cores": f"{lv.client_cpu_cores:.3f}",
                })
        return rows

    def write_csv(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.csv_rows())
        return path

    # -- PNG ----------------------------------------------------------------------------------------

    def write_plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        measured = [m for m in self.models if m.sweep]
        n = max(1, len(measured))
        fig, axes = plt.subplots(n, 1, figsize=(8, 3.4 * n), squeeze=False)
        try:
            if not measured:
                ax = axes[0][0]
                ax.text(0.5, 0.5, "no throughput measured", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
            for ax, m in zip((row[0] for row in axes), measured):
                levels = sorted(m.sweep, key=lambda lv: lv.concurrency)
                xs = [lv.concurrency for lv in levels]
                tp = [lv.throughput for lv in levels]
                p99 = [lv.p99_ms if lv.p99_ms is not None else float("nan") for lv in levels]
                ax.plot(xs, tp, color="tab:blue", marker="o", label="inferences/s")
                for lv in levels:
                    if not lv.stable:
                        ax.plot([lv.concurrency], [lv.throughput], marker="o", markersize=11, markerfacecolor="none",
                                color="tab:red", linestyle="none")
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [str(x) for x in xs])
                ax.set_xlabel("concurrency")
                ax.set_ylabel("inferences/s", color="tab:blue")
                ax.set_ylim(bottom=0)
                ax2 = ax.twinx()
                ax2.plot(xs, p99, color="tab:orange", marker="s", linestyle="--", label="p99 latency (ms)")
                ax2.set_ylabel("p99 latency (ms)", color="tab:orange")
                ax2.set_ylim(bottom=0)
                if m.slo.min_throughput is not None:
                    ax.axhline(m.slo.min_throughput, color="tab:blue", linestyle=":", linewidth=1)
                if m.slo.max_p99_ms is not None:
                    ax2.axhline(m.slo.max_p99_ms, color="tab:orange", linestyle=":", linewidth=1)
                sat = m.saturation
                if sat is not None and sat.saturated and sat.concurrency is not None:
                    ax.axvline(sat.concurrency, color="grey", linestyle="-.", linewidth=1)
                verdict = "PASS" if m.passed else "FAIL"
                sat_text = f"saturated at c={sat.concurrency}" if sat and sat.saturated else "not saturated"
                ax.set_title(f"{m.name} v{m.version}: {verdict}, {sat_text} (hollow red = unstable)", fontsize=10)
                ax.grid(True, alpha=0.3)
            fig.tight_layout()
            fig.savefig(path, format="png", dpi=100)
        finally:
            plt.close(fig)
        return path

    def write_outputs(self, *, json_path=None, junit_path=None, csv_path=None, plot_path=None) -> list[Path]:
        """Write every asked-for file; one that fails (disk full, a directory removed meanwhile) does not stop the
        others, and then a GateError names each file that could not be written."""
        written, failed = [], []
        for flag, path, write in (("--json", json_path, self.write_json), ("--junit", junit_path, self.write_junit),
                                  ("--csv", csv_path, self.write_csv), ("--plot", plot_path, self.write_plot)):
            if not path:
                continue
            try:
                written.append(write(path))
            except OSError as exc:
                failed.append(f"{flag} {path}: {exc.strerror or exc}")
            except ImportError as exc:  # --plot without matplotlib (the CLI refuses that before the run)
                failed.append(f"{flag} {path}: {exc}")
        if failed:
            raise bad_input("could not write the smoke report:", details=failed)
        return written

    # -- terminal: the same tables with rich (kit) or as plain text (Triton SDK image) ---------------------

    def summary_rows(self) -> tuple[str, list[tuple[str, str]], list[list[tuple[str, str | None]]]]:
        """(title, columns as (name, "left" | "right"), rows of (text, rich style or None)): one row per model."""
        title = f"Smoke gate: {self.info.protocol}://{self.info.url}"
        columns = [("model", "left"), ("ready", "left"), ("correct", "left"), ("peak inf/s", "right"),
                   ("at c", "right"), ("capacity inf/s", "right"), ("p99 ms @SLO c", "right"), ("errors", "right"), ("saturated", "left"),
                   ("SLO", "left"), ("verdict", "left")]
        rows = []
        for m in self.models:
            peak = m.peak
            at = m.slo.p99_at
            lv = m.level(at) if at is not None else None
            if lv is None and m.sweep:
                lv = max(m.sweep, key=lambda x: x.concurrency)
            correct = {"passed": ("yes", "green"), "failed": ("NO", "red"), "error": ("error", "red")}.get(
                m.correctness.status, ("skipped", "dim"))
            sat = m.saturation
            sat_text = "-" if sat is None else (f"yes (c={sat.concurrency}, {sat.rule})" if sat.saturated else
                                                ("no: client-bound" if sat.load_generator_bound else "no"))
            rows.append([
                (f"{m.name}:{m.version}" if m.version else m.name, None),
                ("yes", "green") if m.ready else ("NO", "red"),
                correct,
                (f"{peak.throughput:,.1f}" if peak else "-", None),
                (str(peak.concurrency) if peak else "-", None),
                (m.capacity.describe() if m.capacity else "-", None),
                (f"{lv.p99_ms:.2f} (c={lv.concurrency})" if lv is not None and lv.p99_ms is not None else "-", None),
                (f"{m.error_rate:.2%}" if m.sweep else "-", None),
                (sat_text, None),
                (m.slo.describe(), None),
                ("PASS", "green") if m.passed else ("FAIL", "bold red"),
            ])
        return title, columns, rows

    def sweep_rows(self, m: ModelReport) -> tuple[str, list[tuple[str, str]], list[list[tuple[str, str | None]]]]:
        """Like `summary_rows`, for one model's concurrency sweep: one row per concurrency."""
        title = f"{m.name}: concurrency sweep (client latency; server figures per request)"
        columns = [(c, "right") for c in ("c", "inf/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "errors", "queue us",
                                          "compute us", "avg batch", "busy", "host cpu", "client cores", "windows")]
        rows = []
        for lv in sorted(m.sweep, key=lambda lv: lv.concurrency):
            s = lv.server
            lat = lv.latency_us
            compute = None
            if s.compute_infer_us is not None:
                compute = (s.compute_input_us or 0) + s.compute_infer_us + (s.compute_output_us or 0)
            cells = [
                str(lv.concurrency),
                f"{lv.throughput:,.1f}",
                *(f"{lat[k] / 1e3:.2f}" if lat.get(k) is not None else "-" for k in ("p50", "p90", "p95", "p99")),
                str(lv.total_errors),
                f"{s.queue_us:.0f}" if s.queue_us is not None else "-",
                f"{compute:.0f}" if compute is not None else "-",
                f"{s.avg_batch_size:.2f}" if s.avg_batch_size is not None else "-",
                f"{s.utilization:.0%}" if s.utilization is not None else "-",
                f"{s.host_cpu:.0%}" if s.host_cpu is not None else "-",
                f"{lv.client_cpu_cores:.2f}",
            ]
            rows.append([(c, None) for c in cells] + [(f"{lv.windows}" + ("" if lv.stable else " unstable"),
                                                      None if lv.stable else "yellow")])
        return title, columns, rows

    @staticmethod
    def _sweep_notes(m: ModelReport) -> list[str]:
        """The lines under a model's sweep table: its capacity and the saturation verdict."""
        return [f"  {m.name}: {x.detail}" for x in (m.capacity, m.saturation) if x is not None and x.detail]

    def _notes(self, include_violations: bool) -> list[tuple[str, str]]:
        """(text, rich style) lines after the tables: warnings, violations, the verdict."""
        out = [(f"warning: {w}", "yellow") for w in self.info.warnings]
        if include_violations:
            out += [(f"FAIL [{v.kind}] {v.message}", "bold red") for v in self.violations]
        out.append((f"smoke gate {'PASSED' if self.passed else 'FAILED'} (exit code {int(self.exit_code)}) in "
                    f"{self.info.duration_s:.1f} s", "bold green" if self.passed else "bold red"))
        return out

    def summary_table(self):
        return _rich_table(*self.summary_rows())

    def sweep_table(self, m: ModelReport):
        return _rich_table(*self.sweep_rows(m))

    def __rich__(self):
        return self.render()

    def render(self, *, include_violations: bool = True):
        """rich: the summary table, a sweep table per measured model, warnings, and (optionally) one line per violation."""
        from rich.console import Group
        from rich.text import Text

        parts = [self.summary_table()]
        for m in self.models:
            if m.sweep:
                parts.append(self.sweep_table(m))
                for line in self._sweep_notes(m):
                    parts.append(Text(line, style="dim"))
        parts += [Text(text, style=style) for text, style in self._notes(include_violations)]
        return Group(*parts)

    def to_text(self, *, include_violations: bool = True) -> str:
        """`render` as plain text: the same tables and lines, for a terminal or log without rich."""
        parts = [_text_table(*self.summary_rows())]
        for m in self.models:
            if m.sweep:
                table = _text_table(*self.sweep_rows(m))
                parts.append("\n".join([table, *self._sweep_notes(m)]))
        parts.append("\n".join(text for text, _ in self._notes(include_violations)))
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.to_text()


# --------------------------------------------------------------------------------------------- stdout JSON

# `--json -` prints the report as one line starting with this, after the human-readable report, so a tool
# reading a Job's log (`kubectl logs`) finds it among the rest.
REPORT_MARKER = "HYBRIDSERVE-SMOKE-REPORT "


def report_line(report: SmokeReport) -> str:
    """The JSON report as one marked line (no newline inside: compact JSON escapes them)."""
    return REPORT_MARKER + json.dumps(report.to_dict(), separators=(",", ":"))


def extract_report(text: str) -> dict | None:
    """The JSON report a `--json -` run printed into `text` (its stdout, or a pod's log), else None.

    Takes the last marked line, wherever the marker starts in it (`kubectl logs --timestamps` prefixes a
    time). Raises ValueError when the marker is there but the JSON after it is not (a truncated log).
    """
    found = None
    for line in text.splitlines():
        at = line.find(REPORT_MARKER)
        if at >= 0:
            found = line[at + len(REPORT_MARKER):]
    if found is None:
        return None
    try:
        data = json.loads(found)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the smoke report line ({REPORT_MARKER.strip()}) is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        raise ValueError(f"the smoke report line ({REPORT_MARKER.strip()}) is not a {SCHEMA_ID} report")
    return data


# --------------------------------------------------------------------------------------------- helpers


def _rich_table(title: str, columns, rows):
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, title_justify="left")
    for name, justify in columns:
        t.add_column(name, justify=justify)
    for row in rows:
        # Text, not markup: model names and messages are shown as they are.
        t.add_row(*(Text(text, style=style or "") for text, style in row))
    return t


def _text_table(title: str, columns, rows) -> str:
    widths = [max([len(name)] + [len(row[i][0]) for row in rows]) for i, (name, _) in enumerate(columns)]

    def line(cells) -> str:
        out = [c.rjust(w) if justify == "right" else c.ljust(w) for c, w, (_, justify) in zip(cells, widths, columns)]
        return "  ".join(out).rstrip()

    body = [title, line([name for name, _ in columns]), line(["-" * w for w in widths])]
    body += [line([text for text, _ in row]) for row in rows]
    return "\n".join(body)


def _us(value: float | None):
    return "" if value is None else int(round(value))


def _write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
