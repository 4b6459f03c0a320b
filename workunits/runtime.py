"""The bundle's side of the client's app contract (docs/apps.md), for any app in workunits/.

The bundle's ``main.py`` calls :func:`main` with the app's package: it reads the input,
hands ``compute`` a checkpoint that is stored atomically in the slot (with the fraction
done, for `tessera status`), and writes the output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from workunits.interface import Checkpoint


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class SlotCheckpoint(Checkpoint):
    """A checkpoint kept in the client's slot, so a killed task resumes where it was."""

    def __init__(self, path: Path, progress: Path) -> None:
        state = json.loads(path.read_text()) if path.exists() else None
        super().__init__(state)
        self.path, self.progress = path, progress

    def save(self, state: Any, fraction: float) -> None:
        _write_atomic(self.path, json.dumps(state).encode())
        _write_atomic(self.progress, f"{min(1.0, max(0.0, fraction)):.4f}".encode())
        self.state = state


def main(app: ModuleType) -> None:
    env = os.environ
    data = Path(env["TESSERA_INPUT"]).read_bytes()
    checkpoint = SlotCheckpoint(Path(env["TESSERA_CHECKPOINT"]), Path(env["TESSERA_PROGRESS"]))
    output = app.compute(data, checkpoint)
    _write_atomic(Path(env["TESSERA_OUTPUT"]), output)
    _write_atomic(Path(env["TESSERA_PROGRESS"]), b"1")
