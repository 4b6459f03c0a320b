"""Talking to a Tessera coordinator as a host: key, registration, scheduler RPC, files.

Every request after registration is signed with the host's Ed25519 key
(:mod:`tessera_client.signing`). The coordinator's answers are plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from nacl.signing import SigningKey

from tessera_client import __version__
from tessera_client.signing import b64decode, b64encode, sign_request

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
# How the client names itself: a project may refuse versions older than its minimum (HTTP 426).
USER_AGENT = (
    f"tessera-client/{__version__} Python/{platform.python_version()} {sys.platform} "
    f"requests/{requests.__version__}"
)
MAX_INPUT_BYTES = 1024**3  # whatever a reply claims, no input is read past this
MAX_ELAPSED = 1e8  # seconds: the most a report may claim (the coordinator's bound)


class ProtocolError(Exception):
    """The coordinator refused a request; ``status`` and ``code`` say why."""

    def __init__(self, status: int, code: str, detail: Any, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def is_temporary(self) -> bool:
        """Worth trying again later: the coordinator is busy, down or asked us to wait."""
        return self.status in (408, 429) or self.status >= 500


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # an HTTP date, or garbage: the back-off decides alone


class HostKey:
    """The host's identity: an Ed25519 key pair made on this device, never sent anywhere."""

    def __init__(self, signing_key: SigningKey) -> None:
        self.signing_key = signing_key

    @classmethod
    def generate(cls) -> HostKey:
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: Path) -> HostKey:
        return cls(SigningKey(b64decode(Path(path).read_text().strip())))

    def save(self, path: Path) -> None:
        """Write the private key readable by its owner only, atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(b64encode(bytes(self.signing_key)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @property
    def public_key_b64(self) -> str:
        return b64encode(bytes(self.signing_key.verify_key))


@dataclass
class Report:
    """One finished replica, as the scheduler RPC expects it."""

    replica: int
    status: str  # "success" or "client_error"
    cpu_time: float = 0.0
    output: bytes | None = None
    inline: bool = True
    exit_code: int = 0
    message: str = ""
    fuel: int | None = None  # a wasm task's fuel (docs/science-apps.md); None for a Python app
    elapsed: float | None = None  # seconds the app ran, suspensions left out; None: not known

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "replica": self.replica,
            "status": self.status,
            "cpu_time": self.cpu_time,
            "exit_code": self.exit_code,
        }
        if self.message:
            data["message"] = self.message
        if self.fuel is not None:
            data["fuel"] = self.fuel
        if self.elapsed is not None and self.elapsed == self.elapsed:  # not NaN
            data["elapsed"] = min(max(0.0, float(self.elapsed)), MAX_ELAPSED)
        if self.output is not None:
            data["output_sha256"] = hashlib.sha256(self.output).hexdigest()
            data["output_size"] = len(self.output)
            if self.inline:
                data["output_inline"] = b64encode(self.output)
        return data


def _storage_error(response: requests.Response) -> str:
    """The error code of a refused upload: S3's XML ``<Code>``, or the project's JSON ``error``."""
    text = response.text[:2000]
    if "<Code>" in text:
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0][:64]
    try:
        payload = response.json()
    except ValueError:
        return "error"
    return str(payload.get("error", "error"))[:64] if isinstance(payload, dict) else "error"


class ProjectSession:
    """One host attached to one coordinator, over a kept-alive HTTP session."""

    def __init__(
        self,
        base_url: str,
        key: HostKey,
        host_id: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.host_id = host_id
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        # The environment's proxies (HTTPS_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE)
        # are read once for each server (:meth:`_environment`), not at every request as
        # requests does: that read cost a fifth of the client's time per scheduler RPC.
        self.http.trust_env = False
        self._environments: dict[tuple[str, str], dict[str, Any]] = {}

    def close(self) -> None:
        """Close kept-alive connections."""
        self.http.close()

    def __enter__(self) -> ProjectSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------
    def _path(self, url_or_path: str) -> str:
        parts = urlsplit(url_or_path)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _url(self, url_or_path: str, *, presigned: bool = False) -> str:
        """Where a path or URL from the coordinator points. Signed requests only ever go to the
        project itself, so a tampered reply cannot make this host sign for another server.
        A presigned transfer (an input to GET, an output to POST) carries no signature and may
        point at the project's object storage (an S3 bucket), over HTTP(S) only."""
        if "://" not in url_or_path:
            if not url_or_path.startswith("/"):
                raise ProtocolError(0, "foreign_url", f"{url_or_path[:200]!r} is not a path on the project")
            return self.base_url + url_or_path
        if presigned:
            if urlsplit(url_or_path).scheme not in ("http", "https"):
                raise ProtocolError(0, "foreign_url", f"{url_or_path[:200]!r} is not an HTTP(S) URL")
            return url_or_path
        if urlsplit(url_or_path)[:2] != urlsplit(self.base_url)[:2]:
            raise ProtocolError(0, "foreign_url", f"{url_or_path[:200]!r} is not on {self.base_url}")
        return url_or_path

    def _environment(self, url: str) -> dict[str, Any]:
        """The proxies and certificate check that the environment sets for ``url``'s server."""
        origin = urlsplit(url)[:2]
        if origin not in self._environments:
            with requests.Session() as reader:  # trusts the environment, as requests does
                found = reader.merge_environment_settings(url, {}, None, None, None)
            self._environments[origin] = {"proxies": found["proxies"], "verify": found["verify"]}
        return self._environments[origin]

    def request(
        self,
        method: str,
        url_or_path: str,
        *,
        body: bytes = b"",
        content_type: str = "application/json",
        extra_headers: dict[str, str] | None = None,
        sign: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        headers = {"Content-Type": content_type} if body else {}
        if sign:
            headers.update(
                sign_request(
                    self.key.signing_key,
                    method=method,
                    path=self._path(self._url(url_or_path)),
                    body=body,
                    host_id=self.host_id,
                )
            )
        headers.update(extra_headers or {})
        url = self._url(url_or_path, presigned=not sign)
        response = self.http.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=self.timeout,
            stream=stream,
            **self._environment(url),
        )
        if response.status_code >= 400:
            try:
                payload = response.json()
                code, detail = payload.get("error", "error"), payload.get("detail", payload)
            except ValueError:
                code, detail = "error", response.text[:500]
            finally:
                response.close()
            raise ProtocolError(response.status_code, str(code), detail, _retry_after(response))
        return response

    def post_json(self, path: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return self.request("POST", path, body=body, **kwargs).json()

    # -- the protocol -----------------------------------------------------------------
    def register(
        self,
        *,
        account_token: str,
        name: str,
        platform: str,
        n_cpus: int,
        memory_bytes: int,
        flops: float = 0.0,
        description: dict[str, Any] | None = None,
    ) -> int:
        """Register this host's public key under the volunteer's account; keeps the host id.
        ``description``: what the host is (:func:`tessera_client.hardware.describe`), sent along."""
        payload = {
            **(description or {}),
            "public_key": self.key.public_key_b64,
            "name": name,
            "platform": platform,
            "n_cpus": n_cpus,
            "memory_bytes": memory_bytes,
            "flops": flops,
        }
        self.host_id = None
        reply = self.post_json(
            f"{API_PREFIX}/hosts", payload, extra_headers={"Authorization": f"Token {account_token}"}
        )
        self.host_id = int(reply["host_id"])
        return self.host_id

    def project_info(self) -> dict[str, Any]:
        """The project's public facts: its name and the code-signing key to pin (unsigned GET)."""
        info = self.request("GET", f"{API_PREFIX}/project", sign=False).json()
        if not isinstance(info, dict) or not isinstance(info.get("code_signing_key"), str):
            raise ProtocolError(0, "bad_reply", "the project did not say which key signs its apps")
        return info

    def scheduler_rpc(
        self,
        *,
        reports: list[Report] | None = None,
        tasks: int = 0,
        seconds: float = 0.0,
        host_info: dict[str, Any] | None = None,
        in_progress: list[int] | None = None,
    ) -> dict[str, Any]:
        """Report finished replicas and ask for work in one signed call. ``in_progress`` names
        the unfinished tasks held, so the project can call off those it no longer wants."""
        payload: dict[str, Any] = {"reports": [r.to_json() for r in reports or []]}
        if tasks or seconds:
            payload["work_request"] = {"tasks": tasks, "seconds": seconds}
        if host_info:
            payload["host_info"] = host_info
        if in_progress:
            payload["in_progress"] = list(in_progress)
        return self.post_json(f"{API_PREFIX}/scheduler", payload)

    def download(
        self,
        url: str,
        *,
        max_bytes: int,
        sign: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> bytes:
        """Fetch a file in chunks, refusing to read past ``max_bytes`` (a lying server cannot fill
        the disk or memory); ``progress`` is called with each chunk's size."""
        response = self.request("GET", url, sign=sign, stream=True)
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise ProtocolError(0, "too_large", f"{url} is over the {max_bytes} bytes expected")
                chunks.append(chunk)
                if progress is not None:
                    progress(len(chunk))
        finally:
            response.close()
        return b"".join(chunks)

    def upload_output(self, upload_url: str, data: bytes) -> None:
        """Ask the project (signed) for this output's upload policy, then POST the bytes straight
        to the storage it names (an S3 bucket, or the project's own object endpoint)."""
        policy = self.post_json(upload_url, {})
        try:
            url, fields = str(policy["url"]), {str(k): str(v) for k, v in dict(policy["fields"]).items()}
            file_field = str(policy.get("file_field", "file"))
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(0, "bad_reply", f"the upload policy is malformed: {error}") from error
        if len(data) > int(policy.get("max_bytes", len(data))):
            raise ProtocolError(0, "too_large", f"the output is {len(data)} bytes; the policy allows fewer")
        target = self._url(url, presigned=True)
        response = self.http.post(
            target,
            data=fields,
            files={file_field: ("output", data, "application/octet-stream")},
            timeout=self.timeout,
            **self._environment(target),
        )
        with response:
            if response.status_code >= 300:
                raise ProtocolError(response.status_code, _storage_error(response), response.text[:300])

    def fetch_input(self, task: dict[str, Any]) -> bytes:
        """A task's input: inline in the reply when small, else downloaded and hash-checked."""
        if task.get("input_inline") is not None:
            data = b64decode(task["input_inline"])
        else:
            limit = min(int(task["input_size"]), MAX_INPUT_BYTES)
            data = self.download(task["input_url"], max_bytes=limit)  # presigned: no signature
        if hashlib.sha256(data).hexdigest() != task["input_sha256"]:
            raise ProtocolError(0, "bad_input_hash", "input does not match its SHA-256")
        return data
