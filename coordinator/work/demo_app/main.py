"""The demo app: a SHA-256 hash chain, long enough to show progress and checkpoints.

Input: JSON {"seed": str, "rounds": int}. Output: the hex digest after ``rounds`` rounds of
SHA-256 starting from the seed. It follows the client's app contract (docs/apps.md): it
resumes from its checkpoint, writes its fraction done, and writes files atomically.
"""

import hashlib
import json
import os
from pathlib import Path

CHECKPOINT_EVERY = 200_000


def write_atomic(path, text):
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def main():
    job = json.loads(Path(os.environ["TESSERA_INPUT"]).read_text())
    rounds = int(job["rounds"])
    done, digest = 0, hashlib.sha256(str(job["seed"]).encode()).digest()
    checkpoint = os.environ["TESSERA_CHECKPOINT"]
    if os.path.exists(checkpoint):
        state = json.loads(Path(checkpoint).read_text())
        done, digest = state["done"], bytes.fromhex(state["digest"])
    while done < rounds:
        for _ in range(min(CHECKPOINT_EVERY, rounds - done)):
            digest = hashlib.sha256(digest).digest()
            done += 1
        write_atomic(checkpoint, json.dumps({"done": done, "digest": digest.hex()}))
        write_atomic(os.environ["TESSERA_PROGRESS"], str(done / rounds))
    write_atomic(os.environ["TESSERA_OUTPUT"], digest.hex())


if __name__ == "__main__":
    main()
