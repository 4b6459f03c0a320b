"""The scientists' API: submit, watch, cancel and fetch batches from a script or a notebook.

Every call carries ``Authorization: Bearer tss_…`` (a scientist token, made in the admin
site or with ``manage.py scientist_token``). A scientist sees only their own batches:
anyone else's answer 404, as if they did not exist.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coordinator.core.errors import AuthenticationRejected, Conflict, InvalidInput, PayloadTooLarge
from coordinator.core.parsers import SafeJSONParser
from coordinator.science import access, actions, parameters, selectors, services, tokens
from coordinator.work.lifecycle import Policy
from coordinator.work.models import Batch

ERRORS = {
    400: OpenApiResponse(description="bad parameters: the detail names the line or field"),
    401: OpenApiResponse(description="missing or unknown scientist token"),
    403: OpenApiResponse(description="the token's user is not a scientist"),
    404: OpenApiResponse(description="no such batch (or another scientist's)"),
    413: OpenApiResponse(description="the parameters are over BATCH_PARAMETER_FILE_MAX_BYTES"),
}


class ScientistTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer tss_…``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, token = header.partition(" ")
        if keyword != self.keyword or not token.strip():
            raise AuthenticationRejected("use 'Authorization: Bearer <scientist token>'")
        return tokens.scientist_for_token(token.strip()), "scientist"

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ScientistTokenScheme(OpenApiAuthenticationExtension):
    target_class = ScientistTokenAuthentication
    name = "scientistToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "a scientist token, tss_…"}


class IsScientist(BasePermission):
    message = "sign in with a scientist token"

    def has_permission(self, request: Request, view: Any) -> bool:
        return access.is_scientist(request.user)


class ScientistView(APIView):
    authentication_classes = [ScientistTokenAuthentication]
    permission_classes = [IsScientist]


# --- serializers ------------------------------------------------------------------------


class ParametersField(serializers.JSONField):
    """A JSON object in a JSON body, or its text in a multipart form."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                return parameters.parse_json_parameters(data)
            except InvalidInput as error:
                raise serializers.ValidationError(error.message) from error
        if not isinstance(data, dict):
            raise serializers.ValidationError("the parameters must be a JSON object")
        return super().to_internal_value(data)


class BatchSubmitSerializer(serializers.Serializer):
    app = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200)
    parameters = ParametersField(
        required=False, help_text="the app's parameters (an object); with a CSV file, the rest of them"
    )
    parameter_file = serializers.FileField(
        required=False,
        allow_empty_file=True,  # refused by the parameter reader, which says so by the file's name
        help_text="multipart only: a .json file of the parameters or a .csv table",
    )
    min_quorum = serializers.IntegerField(min_value=1, max_value=20, default=2)
    target_nresults = serializers.IntegerField(min_value=1, max_value=20, default=2)
    max_error_results = serializers.IntegerField(min_value=0, max_value=100, default=3)
    max_total_results = serializers.IntegerField(min_value=1, max_value=100, default=6)
    delay_bound = serializers.IntegerField(
        min_value=60,
        max_value=365 * 24 * 3600,
        default=7 * 24 * 3600,
        help_text="seconds a host has per task",
    )
    priority = serializers.IntegerField(
        min_value=-100, max_value=100, default=0, help_text="higher is sent first among your own batches"
    )


class UnitCountsSerializer(serializers.Serializer):
    planned = serializers.IntegerField()
    waiting = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    validated = serializers.IntegerField()
    failed = serializers.IntegerField()


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    app = serializers.CharField()
    state = serializers.CharField(help_text="splitting, running, done or cancelled")
    created = serializers.DateTimeField()
    finished = serializers.DateTimeField(allow_null=True)
    units = UnitCountsSerializer()
    per_hour = serializers.FloatField(help_text="units validated per hour, lately")
    seconds_left = serializers.FloatField(
        allow_null=True, help_text="at that pace; null until units validate"
    )
    result_url = serializers.CharField(allow_null=True, help_text="where to download the result, once done")
    assimilation_error = serializers.CharField(
        help_text="why the app could not make a result from the validated outputs; empty when it could"
    )
    failures_url = serializers.CharField()
    parameters = serializers.JSONField()
    priority = serializers.IntegerField()
    revision = serializers.IntegerField(
        help_text="how many times the result was made again after corrections (0: never)"
    )
    corrected_units = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="the units (places in the split, the first 1,000) whose canonical result a correction "
        "replaced after a cheater was caught",
    )


class BatchPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = BatchSerializer(many=True)


class FailedUnitSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    reason = serializers.CharField()
    last_error = serializers.CharField()


def batch_payload(batch: Batch) -> dict[str, Any]:
    progress = selectors.batch_progress(batch, now=timezone.now())
    return {
        "id": batch.pk,
        "name": batch.name,
        "app": batch.app.name,
        "state": batch.state,
        "created": batch.created,
        "finished": batch.finished,
        "units": {
            "planned": progress.planned,
            "waiting": progress.waiting,
            "in_progress": progress.in_progress,
            "validated": progress.validated,
            "failed": progress.failed,
        },
        "per_hour": progress.per_hour,
        "seconds_left": progress.seconds_left,
        "result_url": reverse("batch-result", args=[batch.pk]) if batch.result else None,
        "assimilation_error": batch.assimilation_error,
        "failures_url": reverse("batch-failures", args=[batch.pk]),
        "parameters": batch.parameters,
        "priority": batch.priority,
        "revision": batch.revision,
        "corrected_units": selectors.corrected_units(batch),
    }


def submitted_parameters(app_name: str, data: dict[str, Any]) -> parameters.Parameters:
    """The parameters a request carries: typed in ``parameters``, or a file (with the rest)."""
    typed = data.get("parameters")
    upload = data.get("parameter_file")
    if upload is None:
        if typed is None:
            raise InvalidInput("send parameters (a JSON object) or a parameter_file")
        return parameters.Parameters(typed)
    manifest = services.science_app(app_name).MANIFEST
    data_bytes = upload.read(parameters.parameter_file_limit() + 1)
    try:
        return parameters.read_parameter_file(manifest, upload.name, data_bytes, typed or {})
    except (InvalidInput, PayloadTooLarge) as error:
        raise type(error)(f"parameter_file {upload.name}: {error.message}") from error


# --- views ------------------------------------------------------------------------------


class BatchListView(ScientistView):
    """Your batches, newest first; POST submits a new one (JSON, or multipart with a file)."""

    parser_classes = [SafeJSONParser, MultiPartParser]

    @extend_schema(operation_id="v1_batches_list", responses={200: BatchPageSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        paginator.default_limit, paginator.max_limit = 20, 100
        page = paginator.paginate_queryset(
            access.batches_of(request.user).order_by("-pk"), request, view=self
        )
        return paginator.get_paginated_response([batch_payload(batch) for batch in page or []])

    @extend_schema(
        request={"application/json": BatchSubmitSerializer, "multipart/form-data": BatchSubmitSerializer},
        responses={201: BatchSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        limit = parameters.parameter_file_limit()
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > limit + 64 * 1024:
            raise PayloadTooLarge(f"a batch submission is at most {limit:,} bytes of parameters")
        incoming = BatchSubmitSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        got = submitted_parameters(data["app"], data)
        upload = data.get("parameter_file")
        try:
            batch = services.submit_batch(
                owner=request.user,
                app_name=data["app"],
                name=data["name"],
                parameters=got.values,
                policy=Policy(
                    min_quorum=data["min_quorum"],
                    target_nresults=data["target_nresults"],
                    max_error_results=data["max_error_results"],
                    max_total_results=data["max_total_results"],
                    delay_bound=data["delay_bound"],
                ),
                priority=data["priority"],
                table_lines=got.table_lines,
            )
        except InvalidInput as error:
            if upload is None:
                raise
            raise InvalidInput(f"parameter_file {upload.name}: {error.message}") from error
        actions.split_soon(batch.pk)
        return Response(batch_payload(batch), status=201)


class BatchDetailView(ScientistView):
    """One of your batches: its progress and, once done, where its result is."""

    @extend_schema(responses={200: BatchSerializer, **ERRORS})
    def get(self, request: Request, batch_id: int) -> Response:
        return Response(batch_payload(access.batch_of(request.user, batch_id)))


class BatchCancelView(ScientistView):
    """Cancel a batch: nothing more is sent, hosts abort at their next call. Repeating is harmless."""

    @extend_schema(
        request=None,
        responses={200: BatchSerializer, 409: OpenApiResponse(description="already done"), **ERRORS},
    )
    def post(self, request: Request, batch_id: int) -> Response:
        batch = access.batch_of(request.user, batch_id)
        actions.cancel(batch.pk)
        batch.refresh_from_db()
        return Response(batch_payload(batch))


class BatchResultView(ScientistView):
    """The assimilated result file of a finished batch."""

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="not done"),
            **ERRORS,
        }
    )
    def get(self, request: Request, batch_id: int) -> FileResponse:
        batch = access.batch_of(request.user, batch_id)
        if batch.assimilation_error:
            raise Conflict(
                f"batch {batch_id} has no result: {batch.assimilation_error}", code="assimilation_failed"
            )
        if not batch.result:
            raise Conflict(f"batch {batch_id} has no result yet (it is {batch.state})", code="no_result")
        name = batch.result.name.rsplit("/", 1)[-1]
        return FileResponse(batch.result.open("rb"), filename=name, content_type="application/octet-stream")


class BatchFailuresView(ScientistView):
    """The batch's failed units, with why each failed."""

    @extend_schema(responses={200: FailedUnitSerializer(many=True), **ERRORS})
    def get(self, request: Request, batch_id: int) -> Response:
        batch = access.batch_of(request.user, batch_id)
        paginator = LimitOffsetPagination()
        paginator.default_limit, paginator.max_limit = 100, 1000
        limit, offset = paginator.get_limit(request), paginator.get_offset(request)
        assert limit is not None  # the default limit stands in for a missing one
        failed = selectors.failed_units(batch, limit=limit, offset=offset)
        return Response([asdict(unit) for unit in failed])
