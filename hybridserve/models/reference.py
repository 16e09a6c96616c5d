"""The reference set's on-disk format (`<version>/reference.npz`, arrays `input/<NAME>` and `output/<NAME>`).

One reader and key format for the build (writer), the repository checks and the smoke gate. It is defined
in `smoke_tests.reference_file`, since the gate must run without the kit; this module re-exports it.
"""

from __future__ import annotations

from smoke_tests.reference_file import REFERENCE_FILE, read_reference, reference_key

__all__ = ["REFERENCE_FILE", "read_reference", "reference_key"]
