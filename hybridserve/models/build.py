"""`hybridserve models build`: deterministic TorchScript artifacts and reference sets.

For every model of `definitions.MODEL_SPECS` present in the repository it writes, into
`<repo>/<name>/<version>/`:

- `model.pt`: the module traced with fixed seeds, re-packed without debug info (source paths of
  this checkout) so the bytes depend only on the code, the seed and the torch version;
- `reference.npz`: a few inputs and the outputs of the saved TorchScript on them, keys
  `input/<TRITON_NAME>` and `output/<TRITON_NAME>`, batch dimension first, config dtypes.

Two builds give byte-identical files (the incremental sync relies on it). Each model is traced in a
fresh process: TorchScript renames a class it has already compiled in the same process
(`___torch_mangle_N`), which would change the bytes of a second build. The processes are forked from a
server that imported torch once and compiled nothing (`run_fresh`). `model.pt` carries a build
stamp (fingerprint of the definitions source, seed, torch and numpy versions, plus the sha256 of
reference.npz), so an up-to-date model is skipped and a changed definition is rebuilt.

Compressed variants (hybridserve.models.variants: a config.pbtxt with parameters variant_of, variant_method...)
are rebuilt after the kit's models, from their base's code and their recorded parameters
(hybridserve.models.compress, its own fingerprint); the accuracy bound applies to each rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.models import definitions
from hybridserve.models.definitions import MODEL_SPECS, ModelSpec
from hybridserve.models.reference import reference_key
from hybridserve.models.repository import REFERENCE_FILE, display_path, validate_repository
from hybridserve.models.variants import repository_variants

BUILD_FORMAT = 1  # bump when this module changes what it writes
N_REFERENCE_SAMPLES = 8
STAMP_RECORD = "extra/hybridserve_build.json"  # where torch.jit.save puts `_extra_files`
WORKER_TIMEOUT_S = 900
# Fixed zip entry time for reference.npz (np.savez would stamp the current time).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuildResult:
    """What one model's build left on disk; `built` is False when the artifacts were up to date."""

    name: str
    version: int
    model_path: Path
    reference_path: Path
    fingerprint: str
    model_sha256: str
    reference_sha256: str
    built: bool


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _definitions_source() -> bytes:
    return Path(definitions.__file__).read_bytes()


def fingerprint(spec: ModelSpec) -> str:
    """What the artifacts of `spec` depend on; a different value means they must be rebuilt."""
    inputs = {
        "format": BUILD_FORMAT,
        "model": spec.name,
        "seed": spec.seed,
        "samples": N_REFERENCE_SAMPLES,
        "definitions_sha256": hashlib.sha256(_definitions_source()).hexdigest(),
        "torch": metadata.version("torch"),
        "numpy": metadata.version("numpy"),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def read_stamp(model_path: Path) -> dict | None:
    """The build stamp inside a model.pt, or None when absent or unreadable."""
    try:
        with zipfile.ZipFile(model_path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/" + STAMP_RECORD)]
            return json.loads(zf.read(names[0])) if names else None
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None


def _up_to_date(version_dir: Path, spec: ModelSpec, fp: str) -> bool:
    stamp = read_stamp(version_dir / spec.artifact)
    reference = version_dir / REFERENCE_FILE
    return (
        stamp is not None
        and stamp.get("fingerprint") == fp
        and reference.is_file()
        and stamp.get("reference_sha256") == sha256_file(reference)
    )


def _result(name: str, spec, version_dir: Path, fp: str, built: bool) -> "BuildResult":
    """What one model (or variant) directory holds after the build: its artifact and reference, with digests."""
    model_path, reference_path = version_dir / spec.artifact, version_dir / REFERENCE_FILE
    return BuildResult(
        name=name,
        version=spec.version,
        model_path=model_path,
        reference_path=reference_path,
        fingerprint=fp,
        model_sha256=sha256_file(model_path),
        reference_sha256=sha256_file(reference_path),
        built=built,
    )


def build_models(
    repo_dir: Path, *, force: bool = False, progress: bool = True, models: Sequence[str] | None = None
) -> list[BuildResult]:
    """Build model.pt and reference.npz for the kit's models in `repo_dir` (all present ones, or `models`).

    Skips models whose artifacts match the current fingerprint unless `force`. Raises UserError when
    the repository's configs are invalid or a build fails.
    """
    repo_dir = Path(repo_dir)
    problems = validate_repository(repo_dir, require_artifacts=False)
    if problems:
        raise UserError(
            f"cannot build: the model repository {display_path(repo_dir)} has {len(problems)} problem(s):",
            details=[str(p) for p in problems],
        )
    found_variants = {v.name: v for v in repository_variants(repo_dir)}  # compressed variants (variants.py)
    if models is not None:
        unknown = [m for m in models if m not in MODEL_SPECS and m not in found_variants]
        if unknown:
            raise UserError(f"unknown model(s) {', '.join(unknown)}; the kit defines: {', '.join(MODEL_SPECS)}"
                            + (f"; variants here: {', '.join(found_variants)}" if found_variants else ""))
        missing = [m for m in models if not (repo_dir / m).is_dir()]
        if missing:
            raise UserError(f"model(s) {', '.join(missing)} have no directory in {display_path(repo_dir)}")
        specs = [MODEL_SPECS[m] for m in models if m in MODEL_SPECS]
        chosen = [found_variants[m] for m in models if m in found_variants]
    else:
        specs = [s for s in MODEL_SPECS.values() if (repo_dir / s.name).is_dir()]
        chosen = list(found_variants.values())
        if not specs and not chosen:
            raise UserError(
                f"{display_path(repo_dir)} holds none of the kit's models ({', '.join(MODEL_SPECS)}); pass --repo PATH"
            )

    results = []
    with _Progress(enabled=progress, total=len(specs) + len(chosen)) as bar:
        for spec in specs:
            version_dir = repo_dir / spec.name / str(spec.version)
            fp = fingerprint(spec)
            built = force or not _up_to_date(version_dir, spec, fp)
            if built:
                bar.update(f"building [bold]{spec.name}[/]")
                _run_worker(spec, version_dir, fp)
            results.append(_result(spec.name, spec, version_dir, fp, built))
            bar.advance(f"{spec.name}: {'built' if built else 'up to date'}")
        # Variants after their bases; each is rebuilt from its base's code and its recorded parameters.
        for variant in chosen:
            from hybridserve.models import compress

            spec = MODEL_SPECS[variant.base]
            version_dir = repo_dir / variant.name / str(spec.version)
            fp = compress.variant_fingerprint(variant)
            built = force or not _up_to_date(version_dir, spec, fp)
            if built:
                bar.update(f"building [bold]{variant.name}[/] ({variant.method} of {variant.base})")
                compress.run_worker(repo_dir / variant.name / "config.pbtxt", version_dir, fp, timeout=WORKER_TIMEOUT_S)
            results.append(_result(variant.name, spec, version_dir, fp, built))
            bar.advance(f"{variant.name}: {'built' if built else 'up to date'}")
    return results


def built_fingerprints(repo_dir: Path) -> dict[str, tuple[ModelSpec, str]]:
    """model name -> (the spec whose code builds it, its build fingerprint), for every kit model and every
    compressed variant present in `repo_dir`: the files `models build` makes (spec.artifact, reference.npz)."""
    from hybridserve.models import compress

    repo_dir = Path(repo_dir)
    out = {s.name: (s, fingerprint(s)) for s in MODEL_SPECS.values() if (repo_dir / s.name).is_dir()}
    for v in repository_variants(repo_dir):
        out[v.name] = (MODEL_SPECS[v.base], compress.variant_fingerprint(v))
    return out


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, *, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from hybridserve.console import make_console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._p = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=make_console(stderr=True),
            )
            self._p.start()
            self._task = self._p.add_task("models", total=self.total)
        return self

    def update(self, description: str) -> None:
        if self.enabled:
            self._p.update(self._task, description=description)

    def advance(self, message: str) -> None:
        if self.enabled:
            self._p.console.print(f"  {message}", highlight=False)
            self._p.advance(self._task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._p.update(self._task, description="models")
            self._p.stop()


_FORKSERVER = None  # multiprocessing's forkserver context, once set up


def _fresh_main(module: str, args: list[str], stdout_path: str, stderr_path: str) -> None:
    """In the forked worker: `python -m module args`, its output in the two files (as subprocess.run captures it).
    multiprocessing has already moved it to the caller's current directory (the server keeps that of its start)."""
    import runpy

    for fd, path in ((1, stdout_path), (2, stderr_path)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)  # its SystemExit is the exit code


def run_fresh(module: str, args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess:
    """`python -m module args` in a process that has compiled no TorchScript, torch already imported.

    A worker must start clean (see the module docstring), but importing torch takes 3-4 s, longer than tracing
    a model. multiprocessing's forkserver (a fresh interpreter that imported torch and this package, and
    compiled nothing) forks each worker instead. Raises subprocess.TimeoutExpired after `timeout` s, having
    killed the worker; an interrupt also kills it. As with any multiprocessing start method but fork, a script
    that calls this must keep its own work under `if __name__ == "__main__":` (the server imports the script).
    """
    import multiprocessing
    import tempfile

    global _FORKSERVER
    if _FORKSERVER is None:
        _FORKSERVER = multiprocessing.get_context("forkserver")
        # "__main__": a script's main module is imported once in the server, not again in every worker.
        _FORKSERVER.set_forkserver_preload(["__main__", "torch", "numpy", "hybridserve.models.build", "hybridserve.models.compress"])
    argv = [module, *args]
    with tempfile.TemporaryDirectory(prefix="hybridserve-worker-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()
        proc = _FORKSERVER.Process(target=_fresh_main, args=(module, list(args), str(out), str(err)), name=module)
        proc.start()
        try:
            proc.join(timeout)
            if proc.exitcode is None:
                raise subprocess.TimeoutExpired(argv, timeout)
        finally:
            if proc.exitcode is None:  # timed out or interrupted: the worker does not outlive the build
                proc.kill()
                proc.join()
        return subprocess.CompletedProcess(argv, proc.exitcode, out.read_text(errors="replace"), err.read_text(errors="replace"))


def _run_worker(spec: ModelSpec, version_dir: Path, fp: str) -> None:
    try:
        proc = run_fresh("hybridserve.models.build", [spec.name, str(version_dir), fp], timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"building {spec.name} took longer than {WORKER_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise UserError(
            f"building {spec.name} failed (exit code {proc.returncode}):",
            exit_code=1,
            details=(proc.stderr.strip().splitlines() or ["(no output)"])[-20:],
        )


# --- the worker: runs in a fresh interpreter, one model ------------------------------------------


def _npz_bytes(arrays: dict[str, "np.ndarray"]) -> bytes:  # noqa: F821
    """np.savez's format with fixed entry times and order, so equal arrays give equal bytes."""
    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    return buf.getvalue()


def _repack_torchscript(raw: bytes, extra: dict[str, bytes]) -> bytes:
    """Rewrite a torch.jit.save archive without its `.debug_pkl` records, adding `extra` records.

    The debug records hold absolute source paths (of this checkout and of the venv), the only
    thing that made two checkouts' artifacts differ. TorchScript loads fine without them; errors
    raised inside the model just lose their Python source lines. Uses torch's own archive
    reader/writer, so record alignment and the version record stay as torch.jit.save wrote them.
    """
    import torch

    reader = torch._C.PyTorchFileReader(io.BytesIO(raw))
    records = reader.get_all_records()
    version_record = ".data/version" if ".data/version" in records else "version"
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out, True, 64)
    writer.set_min_version(int(reader.get_record(version_record)))
    # The writer adds the version and serialization id itself.
    skip = {".data/version", "version", ".data/serialization_id"}
    for name in sorted(records):
        if name in skip or name.endswith(".debug_pkl") or name in extra:
            continue
        data = reader.get_record(name)
        writer.write_record(name, data, len(data))
    for name in sorted(extra):
        writer.write_record(name, extra[name], len(extra[name]))
    writer.write_end_of_file()
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (a running tritonserver, a sync) see the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def deterministic_torch() -> None:
    """Deterministic kernels on one thread (the summation order of a reduction can depend on the thread count).

    torch.use_deterministic_algorithms sets this flag and TorchInductor's, and importing Inductor's config pulls
    in dynamo and sympy: about 3 s per model, as long as importing torch itself. Tracing never runs Inductor, so
    only the kernels' flag is set (the call use_deterministic_algorithms makes, torch 2.13); a torch without it
    gets the public function.
    """
    import torch

    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is not None:
        set_flag(True)
    else:  # pragma: no cover - a future torch
        torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def _build_one(spec: ModelSpec, version_dir: Path, fp: str) -> None:
    import warnings

    import numpy as np
    import torch

    deterministic_torch()
    torch.manual_seed(spec.seed)
    module = spec.factory().eval()
    module.requires_grad_(False)

    samples = spec.sample_inputs(np.random.default_rng(spec.seed), N_REFERENCE_SAMPLES)
    inputs = [torch.from_numpy(samples[t.name]) for t in spec.inputs]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=Warning)
        # Trace on 2 samples; below the saved file is checked against the eager model on all of them (another
        # batch size). That check replaces torch's own re-trace check (check_trace), which also compares on the
        # trace's inputs only and whose comparison imports torch.distributed.tensor: 3.5 s per model.
        traced = torch.jit.trace(module, tuple(x[:2] for x in inputs), check_trace=False)
    raw = io.BytesIO()
    torch.jit.save(traced, raw)
    plain = _repack_torchscript(raw.getvalue(), {})

    loaded = torch.jit.load(io.BytesIO(plain), map_location="cpu").eval()
    with torch.inference_mode():
        got = loaded(*inputs)
        eager = module(*inputs)
    got = (got,) if isinstance(got, torch.Tensor) else tuple(got)
    eager = (eager,) if isinstance(eager, torch.Tensor) else tuple(eager)
    if len(got) != len(spec.outputs):
        raise RuntimeError(f"{spec.name}: the model returns {len(got)} tensor(s), the spec declares {len(spec.outputs)}")

    arrays: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        arrays[reference_key("input", t.name)] = np.asarray(samples[t.name], dtype=t.numpy_dtype)
    for t, g, e in zip(spec.outputs, got, eager):
        out = g.numpy()
        if out.shape[1:] != t.dims or out.dtype != np.dtype(t.numpy_dtype):
            raise RuntimeError(
                f"{spec.name}: output {t.name} is {out.dtype}{list(out.shape)}, the spec says {t.numpy_dtype}{list(t.dims)}"
            )
        if not np.allclose(out, e.numpy(), rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"{spec.name}: traced and eager model disagree on {t.name}; the trace does not generalise")
        arrays[reference_key("output", t.name)] = out
    npz = _npz_bytes(arrays)

    stamp = {"fingerprint": fp, "reference_sha256": hashlib.sha256(npz).hexdigest()}
    final = _repack_torchscript(plain, {STAMP_RECORD: json.dumps(stamp, sort_keys=True).encode()})

    version_dir.mkdir(parents=True, exist_ok=True)
    # Reference first, model (with the stamp) last: an interrupted build is seen as stale.
    _write_atomic(version_dir / REFERENCE_FILE, npz)
    _write_atomic(version_dir / spec.artifact, final)


if __name__ == "__main__":
    _name, _version_dir, _fp = sys.argv[1:4]
    _build_one(MODEL_SPECS[_name], Path(_version_dir), _fp)
