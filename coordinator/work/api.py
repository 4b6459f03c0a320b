"""Public downloads of signed app bundles (the signature, not the channel, is the trust)."""

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from coordinator.work.models import AppVersion


class BundleDownloadView(APIView):
    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: OpenApiResponse(description="unknown")}
    )
    def get(self, request: Request, version_id: int) -> FileResponse:
        version = get_object_or_404(AppVersion, pk=version_id)
        return FileResponse(version.bundle.open("rb"), content_type="application/zip")
