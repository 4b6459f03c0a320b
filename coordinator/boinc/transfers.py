"""Files to and from BOINC clients (docs/boinc.md; BOINC-PROTOCOL.md 1.6 and 1.8).

Downloads: the app versions' signed files and the inputs of units a BOINC host is crunching,
with ``Range`` for a resumed download. The URLs are permanent (a client may fetch hours after
the reply), so they name the file, not a presigned object.

Uploads: BOINC's ``file_upload_handler`` protocol. A size query (``get_file_size``) lets a
client resume; an upload is an XML header, then the bytes from an offset. Its
``xml_signature`` is our upload token (``reply.upload_token``), which binds the file's name,
its most bytes, the replica and its unit, and expires, so a client can only write its own
task's output, never more than the app allows, and no query is needed (an upload is one
request per output file, the hot path). A partial upload waits in ``BOINC_UPLOAD_DIR``; once
whole it goes to the storage at the replica's upload key, where the report's check
(``scheduler._report``) reads it as it reads a ``tessera`` client's upload.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from coordinator.boinc.models import BoincAppFile
from coordinator.boinc.reply import read_upload_token
from coordinator.boinc.xml import element, render
from coordinator.scheduler.uploads import upload_key
from coordinator.work.lifecycle import ReplicaState
from coordinator.work.models import Replica, WorkUnit

INPUT_NAME = re.compile(r"^tin_(\d{1,18})$")
OUTPUT_NAME = re.compile(r"^tout_(\d{1,18})$")
RANGE = re.compile(r"^bytes=(\d{1,15})-(\d{0,15})$")
HEADER_MAX = 16 * 1024
CHUNK = 256 * 1024
TAG = r"<{0}>\s*(.*?)\s*</{0}>"


def _field(header: str, name: str) -> str:
    found = re.search(TAG.format(name), header, re.S)
    return found.group(1) if found else ""


def download(request: HttpRequest, name: str) -> HttpResponse | FileResponse:
    """An app file, or the input of a unit some BOINC host is crunching now."""
    found = INPUT_NAME.match(name)
    if found:
        unit = WorkUnit.objects.filter(pk=int(found.group(1))).first()
        crunched = Replica.objects.filter(
            workunit=unit, state=ReplicaState.IN_PROGRESS, host__bearer=True
        ).exists()
        if unit is None or not crunched:
            return HttpResponse("no such file", status=404, content_type="text/plain")
        if unit.input_inline is not None:
            return _ranged(request, bytes(unit.input_inline))
        return _ranged(request, None, unit.input_file.name)
    row = BoincAppFile.objects.filter(name=name).first()
    if row is None:
        return HttpResponse("no such file", status=404, content_type="text/plain")
    return _ranged(request, None, row.storage_name)


def _ranged(request: HttpRequest, data: bytes | None, stored: str = "") -> HttpResponse | FileResponse:
    """The bytes (``data``, else the stored object), whole or from the ``Range`` the client
    resumes at (one range, as libcurl asks)."""
    size = len(data) if data is not None else default_storage.size(stored)
    start, end = 0, size - 1
    wanted = RANGE.match(request.headers.get("Range", ""))
    if wanted:
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)), size - 1) if wanted.group(2) else size - 1
        if start >= size or start > end:
            refused = HttpResponse(status=416)
            refused["Content-Range"] = f"bytes */{size}"
            return refused
    response: HttpResponse | FileResponse
    if data is not None:
        response = HttpResponse(data[start : end + 1], content_type="application/octet-stream")
    else:
        handle = default_storage.open(stored, "rb")
        handle.seek(start)
        response = FileResponse(_limited(handle, end + 1 - start), content_type="application/octet-stream")
    response["Content-Length"] = str(end + 1 - start)
    response["Accept-Ranges"] = "bytes"
    if wanted:
        response.status_code = 206
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


def _limited(handle: Any, remaining: int) -> Iterator[bytes]:
    with handle:
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def _reply(status: int, message: str = "", **values: object) -> HttpResponse:
    """BOINC's data server reply: 0 done, 1 try again later, -1 give up (the message is shown)."""
    root = element("data_server_reply", status=status, message=message or None, **values)
    return HttpResponse(render(root), content_type="text/xml; charset=utf-8")


def _partial(replica_id: int, *, make_folder: bool = False) -> Path:
    folder = Path(os.fspath(settings.BOINC_UPLOAD_DIR))
    if make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{replica_id}.part"


@csrf_exempt
def file_upload_handler(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    head = request.read(HEADER_MAX)
    marker = head.find(b"<data>\n")
    header = (head if marker < 0 else head[:marker]).decode("utf-8", "replace")
    if marker < 0:
        asked = _field(header, "get_file_size")
        if asked:
            return _reply(0, file_size=_size_so_far(asked))
        return _reply(-1, "not an upload request this server understands")
    return _upload(request, header, head[marker + len(b"<data>\n") :])


def _size_so_far(name: str) -> int:
    found = OUTPUT_NAME.match(name.strip())
    if not found:
        return 0
    partial = _partial(int(found.group(1)))
    return partial.stat().st_size if partial.exists() else 0


def _upload(request: HttpRequest, header: str, first: bytes) -> HttpResponse:
    """Check the token and the figures, then append from the offset; whole, the file goes to
    the storage. Nothing is written for a refused upload."""
    name = _field(header, "name")
    try:
        token = read_upload_token(_field(header, "xml_signature"), now=time.time())
        nbytes, offset = int(_field(header, "nbytes")), int(_field(header, "offset") or 0)
    except signing.SignatureExpired:
        return _reply(-1, "the upload certificate has expired: the task is too late")
    except (signing.BadSignature, ValueError):
        return _reply(-1, "the upload certificate or the sizes are not valid")
    replica_id, unit_id, most = int(token["r"]), int(token["u"]), int(token["m"])
    named = OUTPUT_NAME.match(name)
    if token["n"] != name or named is None or int(named.group(1)) != replica_id:
        return _reply(-1, "the upload certificate is for another file")
    if not 0 <= offset <= nbytes or nbytes > most:
        return _reply(-1, f"the file is over its limit of {most} bytes")
    key, md5_hex = upload_key(unit_id, replica_id), _field(header, "md5_cksum")
    if offset == 0 and len(first) >= nbytes:  # the whole file came with the header: no partial file
        return _store_whole(replica_id, first[:nbytes], key, md5_hex)
    partial = _partial(replica_id, make_folder=True)
    have = partial.stat().st_size if partial.exists() else 0
    if offset > have:
        return _reply(1, "the offset is past what the server has; ask its size again")
    with partial.open("r+b" if partial.exists() else "wb") as handle:
        if have > offset:  # only when there is something to drop: ext4 flushes a file truncated to 0
            handle.truncate(offset)
        handle.seek(offset)
        written = _copy(request, first, handle, nbytes - offset)
    if offset + written < nbytes:
        return _reply(1, "the upload was cut short; resume it")
    return _finish(partial, key, md5_hex)


def _copy(request: HttpRequest, first: bytes, handle: BinaryIO, most: int) -> int:
    """Bytes of the body after the header, at most ``most`` of them."""
    written, chunk = 0, first
    while chunk and written < most:
        piece = chunk[: most - written]
        handle.write(piece)
        written += len(piece)
        chunk = request.read(CHUNK)
    return written


def _store_whole(replica_id: int, data: bytes, key: str, md5_hex: str) -> HttpResponse:
    """A file uploaded whole in one request, as ``_finish`` stores a partial one once complete;
    what an earlier, interrupted try left is dropped, as this upload replaces it."""
    _partial(replica_id).unlink(missing_ok=True)
    if md5_hex and hashlib.md5(data, usedforsecurity=False).hexdigest() != md5_hex.strip().lower():
        return _reply(-1, "the file's MD5 does not match its md5_cksum")
    default_storage.delete(key)
    default_storage.save(key, ContentFile(data))
    return _reply(0)


def _finish(partial: Path, key: str, md5_hex: str) -> HttpResponse:
    digest = hashlib.md5(usedforsecurity=False)
    with partial.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    if md5_hex and digest.hexdigest() != md5_hex.strip().lower():
        partial.unlink()
        return _reply(-1, "the file's MD5 does not match its md5_cksum")
    default_storage.delete(key)
    with partial.open("rb") as handle:
        default_storage.save(key, File(handle))
    partial.unlink()
    return _reply(0)
