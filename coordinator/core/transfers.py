"""The local stand-in for S3's presigned GET and POST, for the embedded default.

With ``STORAGE_URL=file://…`` hosts download inputs and upload outputs here, under the same
rules S3 applies to a presigned URL or POST policy: the signed token names the one object,
its largest size and an expiry, and anything else is refused with nothing stored. With S3
these endpoints answer 404: the bucket serves the bytes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coordinator.core import objects
from coordinator.core.errors import AuthenticationRejected, InvalidInput, PayloadTooLarge

MULTIPART_OVERHEAD = 64 * 1024  # the form's other fields and boundaries


class LocalObjectView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        if objects.on_s3():
            raise Http404("objects are served by the S3 storage")
        super().initial(request, *args, **kwargs)


class ObjectDownloadView(LocalObjectView):
    """GET an object with a presigned token (what S3's presigned GET URL does)."""

    @extend_schema(
        parameters=[OpenApiParameter("token", str, required=True)],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            401: OpenApiResponse(description="forged or expired token"),
            404: OpenApiResponse(description="no such object"),
        },
    )
    def get(self, request: Request) -> FileResponse:
        try:
            name = objects.local_download_name(request.query_params.get("token", ""))
        except objects.PolicyRefused as error:
            raise AuthenticationRejected(f"this download link is refused: {error}") from error
        if not default_storage.exists(name):
            raise Http404("no such object")
        return FileResponse(default_storage.open(name, "rb"), content_type="application/octet-stream")


class ObjectUploadSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=300)
    token = serializers.CharField(max_length=2000)
    file = serializers.FileField(allow_empty_file=True)


class ObjectUploadView(LocalObjectView):
    """POST an object under a presigned policy (what S3's POST policy does): the key, the
    size limit and the expiry in the signed token must all hold, or nothing is stored."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ObjectUploadSerializer},
        responses={
            204: OpenApiResponse(description="stored"),
            400: OpenApiResponse(description="no file"),
            401: OpenApiResponse(description="forged or expired policy, or another key"),
            413: OpenApiResponse(description="over the policy's size"),
        },
    )
    def post(self, request: Request) -> Response:
        length = request.META.get("CONTENT_LENGTH") or ""
        ceiling = settings.TESSERA["OUTPUT_BYTES_CEILING"]
        if not length.isdigit() or int(length) > ceiling + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"no upload is over {ceiling} bytes")  # refused before it is read
        key, token = request.POST.get("key", ""), request.POST.get("token", "")
        try:
            limit = objects.local_upload_limit(token, key)
        except objects.PolicyRefused as error:
            raise AuthenticationRejected(f"this upload is refused: {error}") from error
        if int(length) > limit + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"an upload under this policy is at most {limit} bytes")
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("send the object as the form's file field", code="no_file")
        if upload.size > limit:
            raise PayloadTooLarge(f"the object is {upload.size} bytes; this policy allows {limit}")
        default_storage.delete(key)  # S3 replaces an object; the file system would rename it
        stored = default_storage.save(key, upload)
        if stored != key:  # a concurrent upload of the same key won the race
            default_storage.delete(stored)
            raise InvalidInput("the object is being uploaded by another request", code="retry")
        return Response(status=204)
