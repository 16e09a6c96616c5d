"""Interface and correctness checks of one served model against its reference set.

Interface: every reference input and output must exist on the served model with the same datatype, and
the reference shapes must fit the served dims (-1 matches any size; the batch dimension when
max_batch_size > 0). A mismatch is exit code 6, found before any inference is sent.

Correctness: the reference inputs are sent in requests of at most max_batch_size rows; each output must
have the reference's shape and lie within the model's tolerance: |got - want| <= atol + rtol * |want|
(numpy.isclose), exact equality for integer and bool outputs, NaN only where the reference has NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smoke_tests.endpoint import Endpoint, EndpointError
from smoke_tests.errors import ExitCode
from smoke_tests.references import ModelReference
from smoke_tests.results import Correctness, TensorCheck

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def interface_problems(ref: ModelReference, metadata: dict, max_batch_size: int) -> list[str]:
    """Why the served model (metadata from the server) cannot take/give the reference tensors; [] if it can."""
    from tritonclient.utils import np_to_triton_dtype

    problems = []
    served = {
        "input": {t["name"]: t for t in metadata.get("inputs", [])},
        "output": {t["name"]: t for t in metadata.get("outputs", [])},
    }
    for kind, arrays in (("input", ref.inputs), ("output", ref.outputs)):
        for name, array in arrays.items():
            tensor = served[kind].get(name)
            if tensor is None:
                have = ", ".join(sorted(served[kind])) or "none"
                problems.append(f"{kind} {name!r}: not an {kind} of the served model (it has: {have})")
                continue
            want_dtype = np_to_triton_dtype(array.dtype)
            if tensor.get("datatype") != want_dtype:
                problems.append(f"{kind} {name!r}: the server declares {tensor.get('datatype')}, the reference is {want_dtype} ({array.dtype})")
            dims = list(tensor.get("shape", []))
            shape = list(array.shape)
            if max_batch_size > 0:
                # Served shape is [-1, *dims]; the reference rows are the batch.
                served_dims, ref_dims = dims[1:], shape[1:]
            elif len(dims) == len(shape):
                served_dims, ref_dims = dims, shape
            else:
                served_dims, ref_dims = dims, shape[1:]  # one sample per row, sent row by row
            if len(served_dims) != len(ref_dims) or any(d != -1 and d != r for d, r in zip(served_dims, ref_dims)):
                problems.append(f"{kind} {name!r}: the server declares shape {dims}, the reference has {shape}")
    return problems


def request_chunks(ref: ModelReference, max_batch_size: int, metadata: dict) -> list[tuple[slice, bool]]:
    """Row ranges of the reference to send; the flag says whether the rows keep their batch dimension."""
    rows = ref.rows
    if max_batch_size > 0:
        return [(slice(i, min(i + max_batch_size, rows)), True) for i in range(0, rows, max_batch_size)]
    first = next(iter(ref.inputs))
    served = next((t for t in metadata.get("inputs", []) if t["name"] == first), None)
    if served is not None and len(served.get("shape", [])) == ref.inputs[first].ndim:
        return [(slice(0, rows), True)]
    return [(slice(i, i + 1), False) for i in range(rows)]


def compare(name: str, got: "np.ndarray | None", want: "np.ndarray", atol: float, rtol: float) -> TensorCheck:
    import numpy as np

    if got is None:
        return TensorCheck(name, list(want.shape), int(want.size), int(want.size), None, None, None,
                           "the server returned no such output")
    if got.shape != want.shape:
        return TensorCheck(name, list(got.shape), int(want.size), int(want.size), None, None, None,
                           f"shape {list(got.shape)}, the reference has {list(want.shape)}")
    if want.dtype.kind in "biuSUO":
        bad = got != want
        abs_diff = rel_diff = None
        if want.dtype.kind in "biu":
            d = np.abs(got.astype(np.float64) - want.astype(np.float64))
            abs_diff = float(d.max()) if d.size else 0.0
            rel_diff = float((d / np.maximum(np.abs(want.astype(np.float64)), 1e-30)).max()) if d.size else 0.0
    else:
        g64, w64 = got.astype(np.float64), want.astype(np.float64)
        bad = ~np.isclose(g64, w64, atol=atol, rtol=rtol, equal_nan=True)
        finite = np.isfinite(g64) & np.isfinite(w64)
        d = np.abs(g64 - w64)[finite]
        abs_diff = float(d.max()) if d.size else 0.0
        rel_diff = float((d / np.maximum(np.abs(w64[finite]), 1e-30)).max()) if d.size else 0.0
    mismatched = int(np.count_nonzero(bad))
    first = [int(i) for i in np.argwhere(bad)[0]] if mismatched else None
    message = ""
    if mismatched:
        message = (f"{mismatched} of {want.size} values out of tolerance (atol {atol:g}, rtol {rtol:g}); "
                   f"max |diff| {abs_diff:.3g}, first at index {first}")
    return TensorCheck(name, list(got.shape), int(want.size), mismatched, abs_diff, rel_diff, first, message)


def check_correctness(endpoint: Endpoint, ref: ModelReference, version: str, metadata: dict,
                      max_batch_size: int) -> tuple[Correctness, ExitCode | None]:
    """Run the reference set through the served model. Returns the result and the exit code of a failure."""
    import numpy as np

    result = Correctness("passed", samples=ref.rows, atol=ref.atol, rtol=ref.rtol)
    problems = interface_problems(ref, metadata, max_batch_size)
    if problems:
        result.status = "error"
        result.message = "interface mismatch: " + "; ".join(problems)
        return result, ExitCode.INTERFACE
    outputs = list(ref.outputs)
    got: dict[str, list] = {k: [] for k in outputs}
    for rows, batched in request_chunks(ref, max_batch_size, metadata):
        inputs = {k: np.ascontiguousarray(v[rows] if batched else v[rows][0]) for k, v in ref.inputs.items()}
        try:
            answer = endpoint.infer(ref.name, version, inputs, outputs)
        except EndpointError as exc:
            result.status = "error"
            result.message = f"rows {rows.start}..{rows.stop - 1}: {exc}"
            if exc.code is not None:
                return result, exc.code
            # The server rejected the request: the served model does not take these inputs.
            return result, ExitCode.INTERFACE
        for k in outputs:
            value = answer.get(k)
            if value is not None and not batched:
                value = value[None, ...]
            got[k].append(value)
    failed = False
    for k in outputs:
        parts = got[k]
        try:
            value = None if any(p is None for p in parts) else (np.concatenate(parts, axis=0) if parts else None)
        except ValueError:  # answers of different shapes per request
            shapes = sorted({tuple(p.shape) for p in parts})
            check = TensorCheck(k, [], int(ref.outputs[k].size), int(ref.outputs[k].size), None, None, None,
                                f"answers of shapes {shapes} do not fit the reference {list(ref.outputs[k].shape)}")
        else:
            check = compare(k, value, ref.outputs[k], ref.atol, ref.rtol)
        result.outputs.append(check)
        failed = failed or bool(check.mismatched)
    if failed:
        result.status = "failed"
        result.message = "; ".join(f"{c.name}: {c.message}" for c in result.outputs if c.mismatched)
        return result, ExitCode.CORRECTNESS
    return result, None
