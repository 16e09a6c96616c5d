"""The reference set's on-disk format, shared by the build (writer), the repository checks and the smoke
gate (readers): `<version>/reference.npz` with arrays `input/<TRITON_NAME>` and `output/<TRITON_NAME>`,
batch dimension first, dtypes as in config.pbtxt.

It lives in the gate, not in `hybridserve.models`, because the gate runs without the kit (in-cluster jobs
from NVIDIA's Triton SDK image); `hybridserve.models.reference` re-exports it. Needs numpy only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

REFERENCE_FILE = "reference.npz"


def reference_key(kind: str, tensor: str) -> str:
    """The npz entry of one tensor: kind is "input" or "output"."""
    return f"{kind}/{tensor}"


def read_reference(path: Path) -> tuple[dict[str, "np.ndarray"], dict[str, "np.ndarray"]]:
    """(inputs, outputs) by Triton tensor name. Raises OSError or ValueError on an unreadable file."""
    import numpy as np

    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            kind, _, tensor = key.partition("/")
            if kind == "input" and tensor:
                inputs[tensor] = npz[key]
            elif kind == "output" and tensor:
                outputs[tensor] = npz[key]
    return inputs, outputs
