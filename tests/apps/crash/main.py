"""Refuses its input with a traceback, as a buggy app or a poisoned input would."""

import os
from pathlib import Path

raise ValueError(f"cannot parse input {Path(os.environ['TESSERA_INPUT']).read_bytes()[:20]!r}")
