"""The verified app for each task: from the cache, or downloaded once and checked against the
key the volunteer pinned when attaching the project.

A bundle that fails its checks ends the task with a client error at once (it will not get
better); a network failure leaves the task waiting and backs the project off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import requests
from rich.progress import Progress

from tessera_client.app_outcome import Outcome
from tessera_client.bundles import AppCache, BundleRefused
from tessera_client.contact import ProjectLink
from tessera_client.protocol import ProtocolError
from tessera_client.signing import b64decode
from tessera_client.task_record import TaskRecord

MAX_BUNDLE_BYTES = 256 * 1024 * 1024


class AppSupply:
    """Looks up, downloads, verifies and installs app versions for the daemon."""

    def __init__(
        self,
        cache: AppCache,
        progress: Progress,
        log: Callable[[str], None],
        clock: Callable[[], float],
        finish: Callable[[TaskRecord, Outcome], None],
    ) -> None:
        self.cache, self.progress, self.log, self.clock, self.finish = cache, progress, log, clock, finish

    def app_for(self, record: TaskRecord, link: ProjectLink) -> Path | None:
        """The verified app to run this task, downloading it once; None to try again later."""
        version = record.task["app_version"]
        pinned = b64decode(link.project.code_signing_key)
        label = f"{version['app']} v{version['version']}"
        try:
            found = self.cache.lookup(version, pinned)
            if found is not None:
                return found
            data = self.download(link, version, label)
            entrypoint = self.cache.install(version, data, pinned)
        except BundleRefused as refusal:
            self.log(f"{record.project}: refused app {label}: {refusal}")
            self.finish(record, Outcome("client_error", 0, 0.0, f"app bundle refused: {refusal}"))
            return None
        except ProtocolError as error:
            if error.status == 0:  # refused here, not by the network: it will not get better
                self.finish(
                    record, Outcome("client_error", 0, 0.0, f"cannot download the app: {error.detail}")
                )
            else:
                link.failed(self.clock(), error)
            return None
        except requests.RequestException as error:
            link.failed(self.clock(), error)
            return None
        self.log(f"{record.project}: verified {label}, signed by the pinned key")
        return entrypoint

    def download(self, link: ProjectLink, version: dict[str, Any], label: str) -> bytes:
        """The app version's bundle from the project, with a progress line; not yet verified."""
        size = int(version["size"])
        if not 0 < size <= MAX_BUNDLE_BYTES:
            raise BundleRefused(
                "too_large", f"a bundle of {size} bytes is over the {MAX_BUNDLE_BYTES} this client takes"
            )
        download = self.progress.add_task(f"{link.name}: downloading {label}", total=size or None, note="")
        try:
            return link.download(version["url"], size, lambda n: self.progress.advance(download, n))
        finally:
            self.progress.remove_task(download)
