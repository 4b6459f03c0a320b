"""The host-facing endpoints: the scheduler RPC and the replica file transfers."""

from __future__ import annotations

import functools
from typing import Any, cast

from django.conf import settings
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from tessera_client.signing import b64encode

from coordinator.accounts.authentication import HostSignatureAuthentication
from coordinator.accounts.host_description import HostDescriptionSerializer, host_fields
from coordinator.accounts.models import Host
from coordinator.accounts.relation import network_of
from coordinator.accounts.throttles import HostRateThrottle
from coordinator.core import objects
from coordinator.core.client_version import CurrentClient
from coordinator.core.fields import SHA256_HEX, Base64Field
from coordinator.core.throttles import client_address
from coordinator.scheduler.dispatch import Assignment, WorkRequest
from coordinator.scheduler.reports import ReportIn
from coordinator.scheduler.rpc import HostInfo, RpcResult, SchedulerRequest, handle_scheduler_request
from coordinator.scheduler.uploads import upload_policy
from coordinator.scheduler.well_formed import plain_report, plain_request, report_problem
from coordinator.work.lifecycle import Outcome
from coordinator.work.plan_classes import Usage

MAX_IN_PROGRESS = 1000  # the client sends at most this many (docs/protocol.md)

ERRORS = {
    400: OpenApiResponse(description="malformed or invalid request"),
    401: OpenApiResponse(description="missing, forged, stale or replayed signature"),
    403: OpenApiResponse(description="the replica belongs to another host"),
    404: OpenApiResponse(description="unknown replica"),
    409: OpenApiResponse(description="already reported differently"),
    413: OpenApiResponse(description="body or output over its limit"),
    426: OpenApiResponse(description="the client is older than the project's minimum: upgrade it"),
    429: OpenApiResponse(description="too many requests from this host: wait Retry-After seconds"),
}


class IsHost(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Host)


class HostView(APIView):
    authentication_classes = [HostSignatureAuthentication]
    permission_classes = [IsHost]
    throttle_classes = [HostRateThrottle]

    @staticmethod
    def host(request: Request) -> Host:
        """The signing host, which IsHost made sure the authentication set as ``auth``."""
        return cast(Host, request.auth)


# --- serializers: the contract of the scheduler RPC ----------------------------------------


# A report's inline output: the serializer's field, and the one pass decodes with it too.
INLINE_OUTPUT = Base64Field(max_bytes=settings.TESSERA["INLINE_BYTES_MAX"], required=False)


class ReportSerializer(serializers.Serializer):
    replica = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    status = serializers.ChoiceField(choices=[Outcome.SUCCESS.value, Outcome.CLIENT_ERROR.value])
    cpu_time = serializers.FloatField(min_value=0, max_value=1e8)
    exit_code = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1, default=0)
    output_sha256 = serializers.RegexField(SHA256_HEX, required=False)
    output_size = serializers.IntegerField(min_value=0, max_value=2**53, required=False)
    output_inline = INLINE_OUTPUT  # a declaration: each serializer gets its own copy
    message = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    # A wasm task's fuel (docs/science-apps.md); the validator checks it against the quorum.
    fuel = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, allow_null=True)
    # Seconds the task ran, suspensions excluded: the host's speed on its app version.
    elapsed = serializers.FloatField(min_value=0, max_value=1e8, required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """A plainly well-formed report in one pass (``well_formed``); any other through the
        fields, which say precisely what is wrong."""
        plain = plain_report(data, self.fields["output_inline"].to_internal_value)
        return plain if plain is not None else super().to_internal_value(data)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        problem = report_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return data


def report_from(data: dict[str, Any]) -> ReportIn:
    return ReportIn(
        replica=data["replica"],
        status=Outcome(data["status"]),
        cpu_time=data["cpu_time"],
        exit_code=data["exit_code"],
        output_sha256=data.get("output_sha256", ""),
        output_size=data.get("output_size"),
        output_inline=data.get("output_inline"),
        message=data["message"],
        fuel=data.get("fuel"),
        elapsed=data.get("elapsed"),
    )


def host_info_from(data: dict[str, Any]) -> HostInfo:
    return HostInfo(
        flops=data.get("flops"),
        n_cpus=data.get("n_cpus"),
        memory_bytes=data.get("memory_bytes"),
        description=host_fields(data),
    )


class WorkRequestSerializer(serializers.Serializer):
    tasks = serializers.IntegerField(min_value=0, max_value=10_000, default=0)
    seconds = serializers.FloatField(min_value=0, max_value=30 * 24 * 3600, default=0)


class HostInfoSerializer(HostDescriptionSerializer):
    """What the host measured about itself and what it is (docs/platforms.md)."""

    flops = serializers.FloatField(min_value=0, max_value=1e15, required=False)
    n_cpus = serializers.IntegerField(min_value=1, max_value=4096, required=False)
    memory_bytes = serializers.IntegerField(min_value=0, max_value=2**50, required=False)


class SchedulerRequestSerializer(serializers.Serializer):
    reports = serializers.ListField(
        child=ReportSerializer(), max_length=settings.TESSERA["MAX_REPORTS_PER_RPC"], default=list
    )
    work_request = WorkRequestSerializer(required=False)
    host_info = HostInfoSerializer(required=False, help_text="what the host measured about itself")
    in_progress = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        max_length=MAX_IN_PROGRESS,
        default=list,
        help_text="replicas the host holds unfinished; the reply says which to abort",
    )


class AppVersionOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    app = serializers.CharField()
    version = serializers.IntegerField()
    platform = serializers.CharField()
    url = serializers.CharField(help_text="where to download the bundle")
    sha256 = serializers.CharField()
    signature = serializers.CharField(
        help_text="Ed25519 signature of the bundle by the project's key, base64"
    )
    size = serializers.IntegerField()
    runtime = serializers.CharField(help_text="python, wasm or native")
    plan_class = serializers.CharField(help_text="cpu, mt, or a GPU class (docs/platforms.md)")
    cores = serializers.FloatField(help_text="the CPU cores one task uses")
    gpu = serializers.DictField(allow_null=True, help_text="the GPU it runs on: vendor, api, model, count")


class TaskSerializer(serializers.Serializer):
    replica = serializers.IntegerField()
    workunit = serializers.CharField()
    app_version = AppVersionOutSerializer()
    input_inline = serializers.CharField(allow_null=True, help_text="the input, base64, when small")
    input_url = serializers.CharField(
        allow_null=True, help_text="a presigned URL to GET a larger input from (no signature needed)"
    )
    input_sha256 = serializers.CharField()
    input_size = serializers.IntegerField()
    fpops_estimate = serializers.FloatField()
    memory_bytes = serializers.IntegerField(help_text="memory the unit needs; 0 when unstated")
    deadline = serializers.DateTimeField()
    max_output_bytes = serializers.IntegerField()
    upload_url = serializers.CharField(help_text="where to ask (signed) for the output's upload policy")


class AckSerializer(serializers.Serializer):
    replica = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["accepted", "duplicate", "cancelled"],
        help_text="cancelled: the project had called the replica off; nothing is credited",
    )


class CreditSerializer(serializers.Serializer):
    host_total = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    host_rac = serializers.FloatField()
    volunteer_total = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=False)
    volunteer_rac = serializers.FloatField()


class SchedulerReplySerializer(serializers.Serializer):
    acks = AckSerializer(many=True)
    tasks = TaskSerializer(many=True)
    next_rpc_seconds = serializers.IntegerField(help_text="when to call again")
    server_time = serializers.DateTimeField()
    credit = CreditSerializer(help_text="the host's and its volunteer's credit and RAC")
    abort = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="replicas from in_progress the project called off: stop them and forget them",
    )
    messages = serializers.ListField(
        child=serializers.CharField(), help_text="for the volunteer: why no work came, when it is this host"
    )


URL_MARKER = 987654321  # an id no URL prefix contains, replaced by "{}" in a URL template


def url_of(name: str, pk: int) -> str:
    """``reverse(name, args=[pk])``, from a template reversed once per URL name and script
    prefix: a reply names two URLs a task, and reversing each was 7% of an RPC's profile."""
    return _url_template(name, get_script_prefix()).format(pk)


@functools.lru_cache(maxsize=64)
def _url_template(name: str, prefix: str) -> str:
    url = reverse(name, args=[URL_MARKER]).replace("{", "{{").replace("}", "}}")
    return url.replace(str(URL_MARKER), "{}")


def task_payload(assignment: Assignment) -> dict[str, Any]:
    unit, version = assignment.unit, assignment.app_version
    inline = unit.input_inline
    return {
        "replica": assignment.replica_id,
        "workunit": unit.name,
        "app_version": {
            "id": version.pk,
            "app": version.app.name,
            "version": version.version,
            "platform": version.platform,
            "url": url_of("app-version-bundle", version.pk),
            "sha256": version.bundle_sha256,
            "signature": version.signature,
            "size": version.bundle_size,
            "runtime": version.runtime,
            "plan_class": version.plan_class,
            "cores": assignment.usage.cores,
            "gpu": gpu_payload(assignment.usage),
        },
        "input_inline": b64encode(bytes(inline)) if inline is not None else None,
        "input_url": None
        if inline is not None
        else objects.presigned_get(unit.input_file.name, expires_in=unit.delay_bound),
        "input_sha256": unit.input_sha256,
        "input_size": unit.input_size,
        "fpops_estimate": unit.fpops_estimate,
        "memory_bytes": unit.memory_bytes,
        "fuel_bound": unit.fuel_bound,
        "deadline": assignment.deadline.isoformat(),
        "max_output_bytes": version.max_output_bytes,
        "upload_url": url_of("replica-upload", assignment.replica_id),
    }


def gpu_payload(usage: Usage) -> dict[str, Any] | None:
    """Which kind of GPU a task runs on (the host's own description of it), or None."""
    gpu = usage.gpu
    if gpu is None:
        return None
    return {"vendor": gpu.vendor, "api": gpu.api, "model": gpu.model, "count": 1}


def reply_payload(result: RpcResult, now: Any) -> dict[str, Any]:
    return {
        "acks": [{"replica": ack.replica, "status": ack.status} for ack in result.acks],
        "tasks": [task_payload(assignment) for assignment in result.assignments],
        "next_rpc_seconds": result.next_rpc_seconds,
        "server_time": now.isoformat(),
        "credit": CreditSerializer(result.credit).data,
        "abort": result.abort,
        "messages": result.messages,
    }


# --- views ---------------------------------------------------------------------------------


class SchedulerView(HostView):
    """BOINC's scheduler RPC: report finished replicas and ask for work, in one request."""

    permission_classes = [IsHost, CurrentClient]

    @extend_schema(request=SchedulerRequestSerializer, responses={200: SchedulerReplySerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        data = plain_request(
            request.data,
            INLINE_OUTPUT.to_internal_value,
            max_reports=settings.TESSERA["MAX_REPORTS_PER_RPC"],
            max_in_progress=MAX_IN_PROGRESS,
        )
        if data is None:  # not plainly well formed: the serializer checks it and says what is wrong
            incoming = SchedulerRequestSerializer(data=request.data)
            incoming.is_valid(raise_exception=True)
            data = incoming.validated_data
        work = data.get("work_request") or {}
        now = timezone.now()
        result = handle_scheduler_request(
            host=self.host(request),
            request=SchedulerRequest(
                reports=[report_from(report) for report in data["reports"]],
                work=WorkRequest(tasks=work.get("tasks", 0), seconds=work.get("seconds", 0.0)),
                host_info=host_info_from(data.get("host_info", {})),
                in_progress=data["in_progress"],
                network=network_of(client_address(request)),
            ),
            now=now,
        )
        return Response(reply_payload(result, now))


class UploadPolicySerializer(serializers.Serializer):
    url = serializers.CharField(help_text="POST the form here: the S3 bucket, or the coordinator's own")
    # The stubs see Serializer.fields (a property) here; the metaclass takes declared fields out.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(), help_text="form fields, before the file"
    )
    file_field = serializers.CharField(help_text="the form field that carries the output, last")
    max_bytes = serializers.IntegerField()
    expires_at = serializers.FloatField(help_text="Unix time after which the storage refuses it")


class UploadPolicyView(HostView):
    """A presigned POST policy for one replica's output: the host uploads the bytes straight
    to storage, then reports; the report is checked against what storage holds."""

    @extend_schema(request=None, responses={200: UploadPolicySerializer, **ERRORS})
    def post(self, request: Request, replica_id: int) -> Response:
        policy = upload_policy(host=self.host(request), replica_id=replica_id)
        return Response(
            {
                "url": policy.url,
                "fields": policy.fields,
                "file_field": "file",
                "max_bytes": policy.max_bytes,
                "expires_at": policy.expires_at,
            }
        )
