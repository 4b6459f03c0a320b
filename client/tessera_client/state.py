"""Where the client keeps what it knows: the data folder, host keys and attached projects.

Each attached project has two files so that no two processes ever write the same one: its
settings (``<name>.json``, written by ``tessera attach``, ``share`` and ``detach``) and its
runtime state (``<name>.runtime.json``: credit, back-off, CPU used; written only by the
daemon). The task journal and the app cache live beside them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tessera_client.files import read_json, write_json_atomic
from tessera_client.protocol import HostKey

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StateError(Exception):
    """The data folder cannot be used as asked; the message says what to do."""


def default_data_dir() -> Path:
    """The platform's per-user data folder (XDG on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "Tessera"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Tessera"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share") / "tessera"


def project_name_for(url: str) -> str:
    """A local name for a project from its address: ``science.example.org``, ``127.0.0.1-8000``."""
    parts = urlsplit(url)
    name = (parts.hostname or "project") + (f"-{parts.port}" if parts.port else "")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]


@dataclass
class Project:
    """An attached project, as ``tessera attach`` recorded it."""

    name: str
    url: str
    host_id: int
    code_signing_key: str  # base64 Ed25519 public key, pinned at attach
    fingerprint: str
    project_name: str = ""
    resource_share: float = 100.0
    suggested_preferences: dict = field(default_factory=dict)
    attached_at: float = 0.0
    suspended: bool = False  # the volunteer paused this project: no task of it runs, no new work

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Project:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Runtime:
    """What the daemon learnt about a project: credit, when to call again, CPU it got."""

    credit: dict = field(default_factory=dict)
    backoff: dict = field(default_factory=dict)
    cpu_usage: float = 0.0  # recent CPU seconds, decayed: the resource-share debt
    usage_time: float = 0.0
    last_rpc: float = 0.0
    last_error: str = ""
    host_info_sent: float = 0.0  # when the benchmark last reached the coordinator
    messages: list = field(default_factory=list)  # the project's last word on why no work came
    notices: list = field(default_factory=list)  # the project's newest notices (tessera_client.notices)
    notices_checked: float = 0.0  # when they were last fetched
    credit_history: list = field(default_factory=list)  # [time, host credit, your credit], thinned

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Runtime:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DataDir:
    """The client's folder: ``projects/``, ``keys/``, ``tasks/`` (journal), ``apps/`` (cache)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    def ensure(self) -> DataDir:
        for sub in ("projects", "keys", "tasks", "apps"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "keys", 0o700)
        return self

    # -- paths ------------------------------------------------------------------------
    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def apps(self) -> Path:
        return self.root / "apps"

    @property
    def prefs_file(self) -> Path:
        return self.root / "prefs.json"

    @property
    def host_file(self) -> Path:
        return self.root / "host.json"

    @property
    def suspend_file(self) -> Path:
        """Present while the volunteer has suspended all work (``tessera suspend``)."""
        return self.root / "suspended"

    @property
    def dashboard_file(self) -> Path:
        """Where the running client says its dashboard listens, with the secret (owner only)."""
        return self.root / "keys" / "dashboard.json"

    def _project_file(self, name: str) -> Path:
        return self.root / "projects" / f"{check_name(name)}.json"

    def _runtime_file(self, name: str) -> Path:
        return self.root / "projects" / f"{check_name(name)}.runtime.json"

    def key_file(self, name: str) -> Path:
        return self.root / "keys" / f"{check_name(name)}.key"

    def notices_read_file(self, name: str) -> Path:
        """The newest notice id the volunteer has seen (written by the commands, not the daemon)."""
        return self.root / "projects" / f"{check_name(name)}.notices-read"

    # -- projects ---------------------------------------------------------------------
    def projects(self) -> list[Project]:
        folder = self.root / "projects"
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("*.json")):
            if path.name.endswith(".runtime.json") or path.name.startswith("."):
                continue
            try:
                found.append(Project.from_json(read_json(path)))
            except (ValueError, TypeError) as error:
                raise StateError(f"{path} is damaged ({error}); detach and attach it again") from error
        return found

    def project(self, name: str) -> Project:
        data = read_json(self._project_file(name))
        if data is None:
            attached = ", ".join(p.name for p in self.projects()) or "none"
            raise StateError(f"no project named {name!r} is attached (attached: {attached})")
        return Project.from_json(data)

    def save_project(self, project: Project) -> None:
        write_json_atomic(self._project_file(project.name), asdict(project))

    def remove_project(self, name: str) -> None:
        for path in (
            self._project_file(name),
            self._runtime_file(name),
            self.key_file(name),
            self.notices_read_file(name),
        ):
            path.unlink(missing_ok=True)

    def host_key(self, name: str) -> HostKey:
        return HostKey.load(self.key_file(name))

    def runtime(self, name: str) -> Runtime:
        try:
            return Runtime.from_json(read_json(self._runtime_file(name), {}))
        except (ValueError, TypeError):
            return Runtime()  # only a cache of what the coordinator will tell again

    def save_runtime(self, name: str, runtime: Runtime) -> None:
        write_json_atomic(self._runtime_file(name), asdict(runtime))

    def host_info(self) -> dict[str, Any]:
        """The last benchmark's figures, or an empty dict before the first one."""
        try:
            data = read_json(self.host_file, {})
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def save_host_info(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.host_file, info)


def suggested_preferences(projects: Iterable[Project]) -> dict[str, Any]:
    """The preferences the project with the largest share suggests (BOINC takes one project's);
    the volunteer's own settings override them."""
    lead = max(projects, key=lambda p: (p.resource_share, p.name), default=None)
    return lead.suggested_preferences if lead is not None else {}


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise StateError(f"{name!r} is not a usable project name: letters, digits, '.', '_' and '-' only")
    return name
