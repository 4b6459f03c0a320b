"""What a client says about its computer (docs/platforms.md): the contract, and the Host fields
it becomes.

Sent at registration and, when it changes, in the scheduler RPC's ``host_info``. Every part is
optional (an older client sends none of it) and untrusted: lengths and counts are capped here,
and the scheduler only uses it to choose what to send, so a host that claims what it lacks
earns errors, not work it can keep (its tasks in progress stay within its limits whatever it
claims).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

PLATFORM = r"^[A-Za-z0-9_.-]{1,64}$"
GPU_VENDORS = ["nvidia", "amd", "intel", "apple", "other"]
GPU_APIS = ["cuda", "opencl", "metal"]
RUNTIMES = ["python", "wasm", "native"]
MAX_PLATFORMS = 8
MAX_FEATURES = 256
MAX_GPU_KINDS = 8
MAX_GPUS = 64  # of one kind


def _text(max_length: int) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, required=False, allow_blank=True)


class GpuSerializer(serializers.Serializer):
    vendor = serializers.ChoiceField(choices=GPU_VENDORS)
    api = serializers.ChoiceField(choices=GPU_APIS)
    model = _text(128)
    count = serializers.IntegerField(min_value=1, max_value=MAX_GPUS, default=1)
    memory_bytes = serializers.IntegerField(min_value=0, max_value=2**45, default=0)
    driver_version = _text(32)
    compute_capability = serializers.RegexField(r"^(\d{1,2}\.\d{1,2})?$", required=False, allow_blank=True)
    opencl_version = _text(32)


class HostDescriptionSerializer(serializers.Serializer):
    """The description's fields beyond n_cpus, memory_bytes and flops (which callers keep)."""

    platforms = serializers.ListField(
        child=serializers.RegexField(PLATFORM, max_length=64), max_length=MAX_PLATFORMS, required=False
    )
    os_name = _text(32)
    os_version = _text(64)
    cpu_vendor = _text(64)
    cpu_model = _text(128)
    cpu_family = _text(32)
    cpu_features = serializers.ListField(
        child=serializers.RegexField(r"^[A-Za-z0-9_.-]{1,32}$"), max_length=MAX_FEATURES, required=False
    )
    disk_free_bytes = serializers.IntegerField(min_value=0, max_value=2**53, required=False)
    gpus = serializers.ListField(child=GpuSerializer(), max_length=MAX_GPU_KINDS, required=False)
    use_gpus = serializers.BooleanField(required=False)
    runtimes = serializers.ListField(
        child=serializers.ChoiceField(choices=RUNTIMES), max_length=len(RUNTIMES), required=False
    )
    python_version = serializers.RegexField(r"^\d{1,2}\.\d{1,3}(\.\d{1,3})?$", required=False)
    # BOINC's time_stats: the share of wall time the client runs, and of that the share it may
    # crunch. The deadline check counts on them; a host that overstates them misses deadlines.
    on_fraction = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    active_fraction = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)


def host_fields(data: dict[str, Any], *, platform: str | None = None) -> dict[str, Any]:
    """The Host fields a validated description sets (only those it carried). ``platforms``
    starts with ``platform`` (the host's primary one) when both are given."""
    fields: dict[str, Any] = {}
    for name in (
        "os_name",
        "os_version",
        "cpu_vendor",
        "cpu_model",
        "cpu_family",
        "python_version",
        "on_fraction",
        "active_fraction",
    ):
        if name in data:
            fields[name] = data[name]
    if "platforms" in data or platform:
        listed = list(dict.fromkeys(data.get("platforms") or []))
        primary = platform or (listed[0] if listed else "")
        others = [name for name in listed if name != primary]
        fields["platforms"] = [primary, *others][:MAX_PLATFORMS] if primary else []
        if primary:
            fields["platform"] = primary
    if "cpu_features" in data:
        fields["cpu_features"] = sorted({feature.lower() for feature in data["cpu_features"]})
    if "disk_free_bytes" in data:
        fields["disk_free_bytes"] = data["disk_free_bytes"]
    if "gpus" in data:
        fields["gpus"] = [dict(gpu) for gpu in data["gpus"]]
    if "use_gpus" in data:
        fields["use_gpus"] = data["use_gpus"]
    if "runtimes" in data:
        fields["runtimes"] = sorted(set(data["runtimes"]))
    return fields
