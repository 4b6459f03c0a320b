"""What the client says about its computer: the parsers on captured outputs of the vendors' tools
(tests/data/hardware/README.md says where each came from), the platform names, the disk it may
fill, the description's shape, and tools that hang, fail or print nonsense."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from tessera_client import gpus, hardware, host_tools
from tessera_client.gpus import Gpu

DATA = Path(__file__).parent / "data" / "hardware"
GiB = 1 << 30
FEATURE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")  # what the coordinator accepts
KEYS = {
    "platforms": list,
    "os_name": str,
    "os_version": str,
    "cpu_vendor": str,
    "cpu_model": str,
    "cpu_family": str,
    "cpu_features": list,
    "n_cpus": int,
    "memory_bytes": int,
    "disk_free_bytes": int,
    "gpus": list,
    "use_gpus": bool,
    "runtimes": list,
    "python_version": str,
}
GPU_KEYS = {
    "vendor": str,
    "api": str,
    "model": str,
    "count": int,
    "memory_bytes": int,
    "driver_version": str,
    "compute_capability": str,
    "opencl_version": str,
}


def sample(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(autouse=True)
def fresh_hardware():
    """Each test reads the hardware afresh, and leaves no fake tool's answer in the cache."""
    hardware.refresh()
    yield
    hardware.refresh()


# -- platforms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("linux", "x86_64", ["x86_64-pc-linux-gnu", "i686-pc-linux-gnu"]),
        ("linux", "aarch64", ["aarch64-unknown-linux-gnu"]),
        ("linux", "arm64", ["aarch64-unknown-linux-gnu"]),
        ("linux", "i686", ["i686-pc-linux-gnu"]),
        ("linux", "armv7l", ["arm-unknown-linux-gnueabihf"]),
        ("darwin", "x86_64", ["x86_64-apple-darwin"]),
        ("darwin", "arm64", ["arm64-apple-darwin", "x86_64-apple-darwin"]),
        ("win32", "AMD64", ["windows_x86_64", "windows_intelx86"]),
        ("win32", "x86", ["windows_intelx86"]),
        ("win32", "ARM64", ["windows_arm64", "windows_x86_64"]),
    ],
)
def test_each_os_and_processor_has_its_boinc_platforms_native_first(system, machine, expected):
    assert hardware.platforms_for(system, machine) == expected


@pytest.mark.parametrize(("system", "machine"), [("freebsd14", "amd64"), ("linux", "riscv64"), ("", "")])
def test_an_unknown_computer_still_gets_one_usable_platform_name(system, machine):
    [name] = hardware.platforms_for(system, machine)

    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name)


def test_this_computer_s_platforms_come_from_its_os_and_processor():
    assert hardware.platforms() == hardware.platforms_for(sys.platform, platform.machine())


# -- the CPU ------------------------------------------------------------------------------------


def test_an_x86_linux_cpuinfo_gives_vendor_model_family_and_flags():
    cpu = hardware.parse_proc_cpuinfo(sample("cpuinfo-x86_64-xeon.txt"))

    assert (cpu.vendor, cpu.model, cpu.family) == ("GenuineIntel", "Intel(R) Xeon(R) Processor", "6")
    assert {"sse4_2", "avx2", "avx512f", "amx_tile"} <= set(cpu.features)
    assert len(cpu.features) == len(set(cpu.features))  # two processors, each flag once


def test_a_raspberry_pi_cpuinfo_names_its_core_and_board_chip():
    cpu = hardware.parse_proc_cpuinfo(sample("cpuinfo-aarch64-raspberry-pi-4.txt"))

    assert (cpu.vendor, cpu.model, cpu.family) == ("ARM", "ARM Cortex-A72 (BCM2835)", "")
    assert cpu.features == ("fp", "asimd", "evtstrm", "crc32", "cpuid")


def test_a_graviton_cpuinfo_names_its_core_from_the_part_number():
    cpu = hardware.parse_proc_cpuinfo(sample("cpuinfo-aarch64-graviton2.txt"))

    assert (cpu.vendor, cpu.model) == ("ARM", "ARM Neoverse-N1")
    assert {"asimddp", "atomics", "lrcpc"} <= set(cpu.features)


def test_an_unknown_arm_core_is_named_by_its_part_number():
    text = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x51\nCPU part\t: 0x805\n"

    cpu = hardware.parse_proc_cpuinfo(text)

    assert (cpu.vendor, cpu.model) == ("Qualcomm", "Qualcomm CPU part 0x805")


def test_an_apple_silicon_sysctl_gives_the_arm_features_it_has():
    cpu = hardware.parse_sysctl(sample("sysctl-macos-apple-m1.txt"))

    assert (cpu.vendor, cpu.model, cpu.family) == ("Apple", "Apple M1", "")
    assert {"dotprod", "fp16", "lse", "sha3"} <= set(cpu.features)
    assert not {"bf16", "i8mm", "bti"} & set(cpu.features)  # listed with 0: the M1 lacks them


def test_an_intel_mac_sysctl_gives_all_three_feature_lists():
    cpu = hardware.parse_sysctl(sample("sysctl-macos-intel-i5-5250u.txt"))

    assert cpu.vendor == "GenuineIntel" and cpu.family == "6"
    assert cpu.model == "Intel(R) Core(TM) i5-5250U CPU @ 1.60GHz"
    assert {"sse4.2", "avx1.0", "avx2", "bmi2", "rdtscp"} <= set(cpu.features)


def test_windows_names_vendor_and_family_in_its_processor_string():
    cpu = hardware.parse_windows_processor("Intel64 Family 6 Model 158 Stepping 10, GenuineIntel")

    assert (cpu.vendor, cpu.family) == ("GenuineIntel", "6")
    assert cpu.model == "Intel64 Family 6 Model 158 Stepping 10" and cpu.features == ()


def test_cpu_text_is_cleaned_and_capped():
    text = (
        f"vendor_id\t: Genuine\x1b[31mIntel{'V' * 100}\n"
        f"model name\t: Fast\u202eCPU {'M' * 300}\n"
        f"flags\t: {' '.join(f'flag{i}' for i in range(400))}\n"
    )

    cpu = hardware.parse_proc_cpuinfo(text)

    assert cpu.vendor.startswith("Genuine [31mIntel") and len(cpu.vendor) == 64
    assert cpu.model.startswith("Fast CPU") and len(cpu.model) == 128
    assert len(cpu.features) == hardware.MAX_FEATURES and cpu.features[-1] == "flag255"


def test_feature_names_the_coordinator_would_refuse_are_left_out():
    text = f"vendor_id\t: AuthenticAMD\nflags\t: AVX2 avx2 Bad/Flag {'x' * 40} sse4_2 -x\n"

    assert hardware.parse_proc_cpuinfo(text).features == ("avx2", "sse4_2")


# -- GPUs ------------------------------------------------------------------------------------------


def test_an_h100_from_nvidia_smi():
    [gpu] = gpus.parse_nvidia_smi(sample("nvidia-smi-h100.txt"))

    assert gpu == Gpu("nvidia", "cuda", "NVIDIA H100 80GB HBM3", 81559 << 20, "535.104.05", "9.0")


def test_two_identical_cards_are_one_entry_with_a_count():
    [gpu] = gpus.merge(gpus.parse_nvidia_smi(sample("nvidia-smi-2x-rtx3090.txt")))

    assert (gpu.model, gpu.count, gpu.memory_bytes) == ("NVIDIA GeForce RTX 3090", 2, 24 * GiB)
    assert (gpu.compute_capability, gpu.driver_version) == ("8.6", "535.129.03")


def test_an_old_driver_is_asked_without_compute_capability():
    refused = gpus.parse_nvidia_smi(sample("nvidia-smi-driver470-compute-cap-refused.txt"))
    [gpu] = gpus.parse_nvidia_smi(
        sample("nvidia-smi-gtx1080-driver470-no-compute-cap.txt"), gpus.NVIDIA_FIELDS_OLD
    )

    assert refused == []
    assert (gpu.model, gpu.memory_bytes, gpu.compute_capability) == ("GeForce GTX 1080", 8 * GiB, "")


@pytest.mark.parametrize(
    "text",
    ["", "No devices were found\n", "a, b\n", "NVIDIA X, [N/A], 1, bogus, 1\n", "\x00" * 50, ", , , , \n"],
)
def test_nvidia_smi_nonsense_gives_no_gpu_or_no_made_up_figures(text):
    for gpu in gpus.parse_nvidia_smi(text):
        assert gpu.memory_bytes == 0 and gpu.compute_capability == ""


def test_two_amd_cards_from_clinfo_are_named_by_their_board():
    [gpu] = gpus.merge(gpus.parse_clinfo_raw(sample("clinfo-raw-amd-2x-rx6800xt.txt")))

    assert gpu == Gpu(
        "amd", "opencl", "AMD Radeon RX 6800 XT", 17163091968, "3590.0 (HSA1.1,LC)", "", "2.0", 2
    )


def test_clinfo_s_intel_gpu_counts_and_its_cpu_devices_do_not():
    [gpu] = gpus.parse_clinfo_raw(sample("clinfo-raw-intel-uhd770-and-pocl.txt"))

    assert gpu == Gpu(
        "intel", "opencl", "Intel(R) UHD Graphics 770", 26651185152, "23.17.26241.33", "", "3.0"
    )


def test_a_cpu_only_opencl_platform_has_no_gpu():
    assert gpus.parse_clinfo_raw(sample("clinfo-raw-pocl-cpu.txt")) == []


def test_an_apple_silicon_gpu_runs_metal_and_shares_the_computer_s_memory():
    [gpu] = gpus.parse_system_profiler(sample("system-profiler-apple-m1-pro.json"))

    assert gpu == Gpu("apple", "metal", "Apple M1 Pro")


def test_an_intel_mac_lists_both_its_gpus():
    found = gpus.parse_system_profiler(sample("system-profiler-intel-uhd630-radeon-5500m.json"))

    assert [(g.vendor, g.model, g.memory_bytes) for g in found] == [
        ("intel", "Intel UHD Graphics 630", 0),
        ("amd", "AMD Radeon Pro 5500M", 8 * GiB),
    ]


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", '{"SPDisplaysDataType": "x"}', '{"SPDisplaysDataType": [1]}']
)
def test_system_profiler_nonsense_gives_no_gpu(text):
    assert gpus.parse_system_profiler(text) == []


def test_the_description_stays_within_what_the_coordinator_takes():
    many = [Gpu("other", "opencl", f"card {i}") for i in range(12)] + [
        Gpu("nvidia", "cuda", "X", 1 << 50, count=99)
    ]

    merged = gpus.merge(many)

    assert len(merged) == gpus.MAX_KINDS
    assert Gpu("nvidia", "cuda", "X", 1 << 50, count=99).to_json()["count"] == gpus.MAX_COUNT
    assert Gpu("nvidia", "cuda", "X", 1 << 50).to_json()["memory_bytes"] == gpus.MAX_MEMORY


# -- running the tools ---------------------------------------------------------------------------


def fake_tool(folder: Path, name: str, script: str) -> None:
    """A tool on PATH (PATH holds only ``folder``, so no real tool of this computer answers)."""
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(host_tools, "TOOL_SECONDS", 0.5)
    return folder


def test_a_missing_tool_is_no_gpu(tools):
    assert gpus.detect() == []


def test_a_tool_that_hangs_is_killed_with_what_it_started(tools, tmp_path):
    fake_tool(tools, "nvidia-smi", f"/bin/sleep 30 &\necho $! > {tmp_path}/child\nwait\n")

    started = time.monotonic()
    found = gpus.detect()

    assert found == [] and time.monotonic() - started < 5
    child = int((tmp_path / "child").read_text())
    assert process_gone(child), "the tool's child still runs"


def process_gone(pid: int) -> bool:
    """Dead: gone, or a zombie waiting for its reaper."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "script", ["echo 'Segmentation fault'\nexit 139\n", "head -c 3000 /dev/urandom\n", "exit 0\n"]
)
def test_a_tool_that_fails_or_prints_garbage_is_no_gpu(tools, script):
    fake_tool(tools, "nvidia-smi", script.replace("head", "/usr/bin/head"))
    fake_tool(tools, "clinfo", script.replace("head", "/usr/bin/head"))

    assert gpus.detect() == []


def test_nvidia_smi_is_asked_again_without_compute_cap_by_an_old_driver(tools):
    old = DATA / "nvidia-smi-gtx1080-driver470-no-compute-cap.txt"
    refused = DATA / "nvidia-smi-driver470-compute-cap-refused.txt"
    fake_tool(
        tools,
        "nvidia-smi",
        f'case "$1" in *compute_cap*) /bin/cat {refused}; exit 2;; esac\n/bin/cat {old}\n',
    )

    [gpu] = gpus.detect()

    assert (gpu.model, gpu.compute_capability, gpu.count) == ("GeForce GTX 1080", "", 1)


def test_an_nvidia_card_is_not_counted_twice_through_opencl(tools):
    fake_tool(tools, "nvidia-smi", f"/bin/cat {DATA / 'nvidia-smi-h100.txt'}\n")
    opencl_nvidia = "[NV/0]  CL_DEVICE_NAME  NVIDIA H100\n[NV/0]  CL_DEVICE_VENDOR_ID  0x10de\n"
    opencl_nvidia += "[NV/0]  CL_DEVICE_TYPE  CL_DEVICE_TYPE_GPU\n"
    fake_tool(
        tools, "clinfo", f"/bin/cat {DATA / 'clinfo-raw-amd-2x-rx6800xt.txt'}\necho '{opencl_nvidia}'\n"
    )

    found = gpus.detect()

    assert [(g.vendor, g.api, g.count) for g in found] == [("nvidia", "cuda", 1), ("amd", "opencl", 2)]


# -- the description ------------------------------------------------------------------------------


def test_the_description_of_this_computer_has_every_field_of_its_type(tmp_path):
    described = hardware.describe(tmp_path, limit_bytes=10e9, used_bytes=0, use_gpus=True)

    assert {key: type(value) for key, value in described.items()} == KEYS
    assert described["platforms"][0] == hardware.platforms()[0]
    assert described["os_name"] == platform.system() and described["n_cpus"] >= 1
    assert all(FEATURE.match(feature) for feature in described["cpu_features"])
    assert re.fullmatch(r"\d{1,2}\.\d{1,3}\.\d{1,3}", described["python_version"])
    assert described["runtimes"][0] == "python"
    assert ("wasm" in described["runtimes"]) == (importlib.util.find_spec("wasmtime") is not None)
    assert ("native" in described["runtimes"]) == (os.name == "posix")
    assert 0 <= described["disk_free_bytes"] <= 10e9
    if sys.platform.startswith("linux"):
        assert described["memory_bytes"] > 0 and described["cpu_model"]
    for gpu in described["gpus"]:
        assert {key: type(value) for key, value in gpu.items()} == GPU_KEYS
    assert json.loads(json.dumps(described)) == described


def test_use_gpus_false_names_no_gpu_and_says_so(tools, tmp_path):
    fake_tool(tools, "nvidia-smi", f"/bin/cat {DATA / 'nvidia-smi-2x-rtx3090.txt'}\n")

    shown = hardware.describe(tmp_path, limit_bytes=1e9, used_bytes=0, use_gpus=True)
    hidden = hardware.describe(tmp_path, limit_bytes=1e9, used_bytes=0, use_gpus=False)

    assert shown["gpus"] == [
        Gpu("nvidia", "cuda", "NVIDIA GeForce RTX 3090", 24 * GiB, "535.129.03", "8.6", count=2).to_json()
    ]
    assert (hidden["gpus"], hidden["use_gpus"], shown["use_gpus"]) == ([], False, True)


def test_the_gpus_are_looked_for_once_until_refreshed(tools, tmp_path):
    fake_tool(tools, "nvidia-smi", f"echo x >> {tmp_path}/calls\n/bin/cat {DATA / 'nvidia-smi-h100.txt'}\n")

    for _ in range(3):
        hardware.describe(tmp_path, limit_bytes=1e9, used_bytes=0, use_gpus=True)
    hardware.refresh()
    hardware.describe(tmp_path, limit_bytes=1e9, used_bytes=0, use_gpus=True)

    assert (tmp_path / "calls").read_text().count("x") == 2


# -- disk -----------------------------------------------------------------------------------------


def test_the_free_disk_is_the_limit_less_what_the_client_uses(tmp_path):
    assert hardware.disk_free_bytes(tmp_path, limit_bytes=3e6, used_bytes=1_000_000) == 2_000_000


def test_the_free_disk_is_never_more_than_the_disk_has(tmp_path):
    free = hardware.disk_free_bytes(tmp_path, limit_bytes=1e18, used_bytes=0)

    assert 0 < free <= shutil.disk_usage(tmp_path).free + GiB  # (other programs write meanwhile)


def test_the_free_disk_is_never_below_zero(tmp_path):
    assert hardware.disk_free_bytes(tmp_path, limit_bytes=1e6, used_bytes=5_000_000) == 0


def test_the_free_disk_is_measured_before_the_data_folder_exists(tmp_path):
    assert hardware.disk_free_bytes(tmp_path / "not" / "yet", limit_bytes=5e6, used_bytes=0) == 5_000_000


def test_bytes_under_a_folder_count_its_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 1000)
    (tmp_path / "g").write_bytes(b"y" * 24)

    assert hardware.bytes_under(tmp_path) == 1024 and hardware.bytes_under(tmp_path / "none") == 0


# -- cleaning -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  A\tB\r\nC  ", "A B C"),
        ("x\x00y\x7fz", "x y z"),
        ("evil\u202etxt", "evil txt"),
        ("é ü 日本", "é ü 日本"),
    ],
)
def test_tool_text_becomes_one_clean_line(text, expected):
    assert host_tools.clean(text, 128) == expected
