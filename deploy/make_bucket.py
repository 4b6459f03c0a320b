"""Make the bucket that ``STORAGE_URL`` names, if it is not there yet: a one-shot step.

    python deploy/make_bucket.py

Reads ``STORAGE_URL`` (``s3://BUCKET?endpoint_url=…&region_name=…``) and the usual boto3
credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``). Running it again changes
nothing. With ``file://`` storage, or none, there is nothing to make. The storage may still
be starting: it is retried for up to a minute.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.core.storage_url import default_storage_settings

ATTEMPTS = 30
PAUSE_SECONDS = 2.0


def make_bucket(url: str) -> str:
    """Create the bucket (unless it exists); return what was done, in words."""
    storage = default_storage_settings(url)
    options = storage.get("OPTIONS", {})
    if "bucket_name" not in options:
        return "STORAGE_URL is not an s3:// bucket: nothing to make"

    import boto3
    import botocore.exceptions

    bucket = options["bucket_name"]
    client = boto3.client(
        "s3", endpoint_url=options.get("endpoint_url"), region_name=options.get("region_name")
    )
    try:
        client.head_bucket(Bucket=bucket)
        return f"bucket {bucket!r} is already there"
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = options.get("region_name")
    if region and region != "us-east-1":  # S3 refuses the constraint for its default region
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        client.create_bucket(Bucket=bucket)
    return f"made bucket {bucket!r}"


def main() -> int:
    url = os.environ.get("STORAGE_URL", "")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            print(make_bucket(url), flush=True)
            return 0
        except ValueError as error:  # a malformed STORAGE_URL: retrying will not help
            print(f"make_bucket: {error}", file=sys.stderr)
            return 2
        except Exception as error:
            if attempt == ATTEMPTS:
                print(f"make_bucket: giving up: {type(error).__name__}: {error}", file=sys.stderr)
                return 1
            print(f"make_bucket: storage not ready ({type(error).__name__}); retrying", file=sys.stderr)
            time.sleep(PAUSE_SECONDS)
    return 1


if __name__ == "__main__":
    sys.exit(main())
