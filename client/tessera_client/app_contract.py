"""What an app sees in its slot, as the app contract (docs/apps.md) lists it: its whole
environment, the files it reads and writes, and the progress it reports.

Kept apart from the sandbox that enforces it, since ``tessera status`` reads an app's progress
without running anything.
"""

from __future__ import annotations

import math
from pathlib import Path

STDOUT_NAME = "stdout.txt"
STDERR_NAME = "stderr.txt"


def clean_env(slot: Path, *, cores: int | None = None) -> dict[str, str]:
    """The app's whole environment, exactly as the app contract lists it.

    ``cores``: how many threads the app may keep busy, given to native apps and to any task given
    more than one core (``TESSERA_CORES``, and ``OMP_NUM_THREADS`` so that OpenMP, or a BLAS
    library, starts that many threads and not one per core of the computer).
    """
    slot = Path(slot)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(slot),
        "TMPDIR": str(slot / "tmp"),
        "LANG": "C.UTF-8",
        "TESSERA_API": "1",
        "TESSERA_SLOT": str(slot),
        "TESSERA_INPUT": str(slot / "input"),
        "TESSERA_OUTPUT": str(slot / "output"),
        "TESSERA_CHECKPOINT": str(slot / "checkpoint"),
        "TESSERA_PROGRESS": str(slot / "progress"),
    }
    if cores is not None:
        if cores < 1:
            raise ValueError(f"an app is given at least one core, not {cores}")
        env["TESSERA_CORES"] = env["OMP_NUM_THREADS"] = str(cores)
    return env


def read_progress(slot: Path) -> float:
    """The app's own estimate of its fraction done, 0..1; 0.0 if it wrote none or nonsense."""
    try:
        value = float((Path(slot) / "progress").read_text(encoding="utf-8", errors="replace").strip())
    except (OSError, ValueError):
        return 0.0
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))
