"""Inputs and outputs as objects: hosts move the bytes straight to and from the storage.

A host downloads a large input with a presigned GET URL and uploads an output with a
presigned POST policy that fixes the object's key, its largest size and an expiry, so the
coordinator never carries the bytes. When the host reports, the coordinator reads the object
once to check its size and SHA-256 and keeps what it checked where the host cannot write
(:func:`seal`).

Two backends behind one code path, chosen by ``STORAGE_URL`` (``settings.STORAGES``):

- **S3** (django-storages on boto3: AWS, SeaweedFS, MinIO): the storage itself checks the
  POST policy, and URLs point at the bucket.
- **Local files** (the embedded default): the same contract, served by the coordinator's
  ``/api/v1/objects`` endpoints (``core/transfers.py``); the policy travels as a token
  signed with Django's ``signing`` (the ``SECRET_KEY``), checked the way S3 checks its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage
from django.urls import reverse
from storages.backends.s3 import S3Storage

CHUNK = 1024 * 1024
GET_SALT = "tessera.objects.get"
POST_SALT = "tessera.objects.post"
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # S3's limit for a SigV4 presigned URL


@dataclass(frozen=True)
class UploadPolicy:
    """Everything a host needs to POST one object: where, the form fields, the limits."""

    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int
    expires_at: float  # Unix time


class ObjectTooLarge(Exception):
    """The stored object is larger than the report may claim (never read to the end)."""


def on_s3() -> bool:
    return isinstance(default_storage, S3Storage)


def s3_bucket() -> tuple[Any, str, str]:
    """The boto3 client, the bucket, and the storage's key prefix."""
    storage: Any = default_storage  # an S3Storage (django-storages is untyped)
    return storage.connection.meta.client, storage.bucket_name, storage.location


def _s3_key(name: str) -> str:
    _, _, location = s3_bucket()
    return f"{location.strip('/')}/{name}" if location else name


def presigned_get(name: str, *, expires_in: int) -> str:
    """A URL anyone holding it may GET ``name`` from until it expires."""
    expires_in = max(1, min(expires_in, MAX_PRESIGN_SECONDS))
    if on_s3():
        client, bucket, _ = s3_bucket()
        params = {"Bucket": bucket, "Key": _s3_key(name)}
        return client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
    token = signing.dumps({"k": name, "e": int(time.time()) + expires_in}, salt=GET_SALT, compress=True)
    return f"{reverse('object-download')}?token={token}"


def presigned_post(name: str, *, max_bytes: int, expires_in: int) -> UploadPolicy:
    """A POST policy for exactly this key, at most ``max_bytes``, until it expires."""
    expires_in = max(1, min(expires_in, MAX_PRESIGN_SECONDS))
    expires_at = time.time() + expires_in
    if on_s3():
        client, bucket, _ = s3_bucket()
        key = _s3_key(name)
        post = client.generate_presigned_post(
            bucket, key, Conditions=[["content-length-range", 0, max_bytes]], ExpiresIn=expires_in
        )
        return UploadPolicy(post["url"], dict(post["fields"]), name, max_bytes, expires_at)
    token = signing.dumps({"k": name, "m": max_bytes, "e": int(expires_at)}, salt=POST_SALT, compress=True)
    return UploadPolicy(reverse("object-upload"), {"key": name, "token": token}, name, max_bytes, expires_at)


class PolicyRefused(Exception):
    """A local transfer's token is forged, expired, or for another object."""


def _load(token: str, salt: str) -> dict[str, Any]:
    try:
        policy = signing.loads(token, salt=salt)
    except signing.BadSignature as error:
        raise PolicyRefused("the token is not valid") from error
    if not isinstance(policy, dict) or int(policy.get("e", 0)) < time.time():
        raise PolicyRefused("the token has expired")
    return policy


def local_download_name(token: str) -> str:
    """The object a local presigned GET token names (``PolicyRefused`` otherwise)."""
    return str(_load(token, GET_SALT)["k"])


def local_upload_limit(token: str, key: str) -> int:
    """The size limit of a local POST policy, once it is checked to be for ``key``."""
    policy = _load(token, POST_SALT)
    if policy.get("k") != key:
        raise PolicyRefused("the policy is for another key")
    return int(policy["m"])


@dataclass(frozen=True)
class Sealed:
    """An upload, measured and kept under a name its uploader cannot write."""

    name: str
    size: int
    sha256: str
    upload: str  # what the uploader wrote, free to delete once the report is recorded


class ObjectChanged(Exception):
    """The upload was replaced while it was being sealed."""


def seal(upload: str, *, into: str, max_bytes: int) -> Sealed | None:
    """Read the object at ``upload`` once for its size and SHA-256, and keep exactly the bytes
    measured as ``<into>-<sha256 prefix>``: a host can still overwrite its upload with its
    policy, but never what was checked. None when there is no upload.

    On S3 the copy is done by the bucket, conditional on the object's ETag (the coordinator
    never carries the bytes); locally the bytes are written while they are hashed.
    ``ObjectTooLarge`` if the upload is over ``max_bytes``; ``ObjectChanged`` if it was
    replaced during the check."""
    if on_s3():
        return _seal_s3(upload, into, max_bytes)
    if isinstance(default_storage, FileSystemStorage):
        return _seal_file(upload, into, max_bytes)
    if not default_storage.exists(upload):
        return None
    with default_storage.open(upload, "rb") as handle, tempfile.SpooledTemporaryFile(CHUNK) as copy:
        size, sha = _measure(handle, max_bytes, upload, copy)
        copy.seek(0)
        name = f"{into}-{sha[:16]}"
        default_storage.delete(name)
        default_storage.save(name, File(copy))
    return Sealed(name, size, sha, upload)


def _seal_file(upload: str, into: str, max_bytes: int) -> Sealed | None:
    """The local files' seal, in plain file calls (a report seals every output it names, on
    the scheduler's hot path): the bytes measured are copied to a temporary file of this
    thread's own in the target's folder, which is then renamed into place whole."""
    storage: Any = default_storage
    try:
        handle = open(storage.path(upload), "rb")  # noqa: SIM115  (closed by the with below)
    except FileNotFoundError:
        return None
    target = storage.path(into)
    temporary = f"{target}.sealing-{os.getpid()}-{threading.get_ident()}"
    try:
        with handle, _create(temporary) as copy:
            size, sha = _measure(handle, max_bytes, upload, copy)
        if storage.file_permissions_mode is not None:
            os.chmod(temporary, storage.file_permissions_mode)
        name = f"{into}-{sha[:16]}"
        os.replace(temporary, storage.path(name))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return Sealed(name, size, sha, upload)


def _create(path: str) -> Any:
    """A new file for writing, its folder made on the first miss."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")


def _seal_s3(upload: str, into: str, max_bytes: int) -> Sealed | None:
    client, bucket, _ = s3_bucket()
    try:
        found = client.get_object(Bucket=bucket, Key=_s3_key(upload))
    except client.exceptions.NoSuchKey:
        return None
    if int(found["ContentLength"]) > max_bytes:
        found["Body"].close()
        raise ObjectTooLarge(upload)
    with contextlib.closing(found["Body"]) as body:
        size, sha = _measure(body, max_bytes, upload)
    name = f"{into}-{sha[:16]}"
    try:
        client.copy_object(
            Bucket=bucket,
            Key=_s3_key(name),
            CopySource={"Bucket": bucket, "Key": _s3_key(upload)},
            CopySourceIfMatch=found["ETag"],
        )
    except client.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            raise ObjectChanged(upload) from error
        raise
    return Sealed(name, size, sha, upload)


def _measure(handle: Any, max_bytes: int, name: str, copy: Any = None) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ObjectTooLarge(name)
        sha.update(chunk)
        if copy is not None:
            copy.write(chunk)
    return size, sha.hexdigest()


def delete(name: str) -> None:
    """Forget an object (a missing one is no error)."""
    default_storage.delete(name)
