"""Writes 10 KiB derived from its input: an output that must be uploaded, not inlined."""

import hashlib
import os
from pathlib import Path

seed = Path(os.environ["TESSERA_INPUT"]).read_bytes()
block = hashlib.sha256(seed).hexdigest().encode()
Path(os.environ["TESSERA_OUTPUT"]).write_bytes(block * 160)
