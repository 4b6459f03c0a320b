"""A checkpoint that stops ``compute`` after a few saves, as a client killed mid-task would."""

from __future__ import annotations

from typing import Any

from workunits.interface import Checkpoint


class StopAfter(Checkpoint):
    def __init__(self, saves: int) -> None:
        super().__init__()
        self.saves = saves

    def save(self, state: Any, fraction: float) -> None:
        super().save(state, fraction)
        if len(self.saved) == self.saves:
            raise KeyboardInterrupt


def resumed(compute: Any, data: bytes, saves: int) -> tuple[bytes, StopAfter]:
    """Run ``compute`` until its ``saves``-th checkpoint, then again from that checkpoint."""
    interrupted = StopAfter(saves)
    try:
        compute(data, interrupted)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"compute finished before its checkpoint number {saves}")
    return compute(data, Checkpoint(interrupted.state)), interrupted
