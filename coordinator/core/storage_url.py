"""``STORAGE_URL`` → Django's ``STORAGES["default"]``: local files or an S3 bucket.

- empty: ``MEDIA_ROOT``; ``file:///srv/tessera/media``: files on this machine; hosts
  transfer through the coordinator's ``/api/v1/objects`` endpoints.
- ``s3://BUCKET?endpoint_url=http://127.0.0.1:8333&region_name=us-east-1&location=prefix``:
  the bucket, through django-storages and boto3; credentials from ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` (or the usual boto3 chain). Hosts transfer with the bucket itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

S3_OPTIONS = {"endpoint_url", "region_name", "location", "addressing_style"}


def default_storage_settings(url: str) -> dict[str, Any]:
    if not url:  # MEDIA_ROOT, followed if it changes (tests do)
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    parts = urlsplit(url)
    if parts.scheme == "file":
        return {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": parts.path}}
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"STORAGE_URL must be file:///path or s3://bucket?…, not {url!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - S3_OPTIONS
    if unknown:
        raise ValueError(f"STORAGE_URL: unknown option(s) {', '.join(sorted(unknown))}")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": parts.netloc,
            "signature_version": "s3v4",
            "addressing_style": query.pop("addressing_style", "path"),
            "file_overwrite": True,  # an object's key is its identity (outputs/<unit>/<replica>)
            "querystring_auth": True,
            **query,
        },
    }
