"""Plan classes (work.plan_classes): pure matching of app versions to hosts, with properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.work.plan_classes import (
    CPU,
    GPU,
    MT,
    STANDARD,
    Gpu,
    HostResources,
    Refusal,
    Spec,
    Usage,
    VersionNeeds,
    at_least,
    compatible,
    gpu_count,
    hr_class,
    usage,
    version_key,
)

GIB = 1024**3
LINUX = ("x86_64-pc-linux-gnu", "i686-pc-linux-gnu")
H100 = Gpu("nvidia", "cuda", "NVIDIA H100 80GB HBM3", 1, 80 * GIB, "550.54.15", "9.0")
CUDA, OPENCL = STANDARD["cuda"], STANDARD["opencl"]  # 2 GiB, driver 525, capability 5.0; 1 GiB


def host(**change) -> HostResources:
    values = {"platforms": LINUX, "n_cpus": 8, "memory_bytes": 16 * GIB, "flops": 4e9}
    values.update(change)
    return HostResources(**values)


def test_a_cpu_version_takes_one_core_at_the_hosts_speed():
    assert usage(Spec("cpu"), host()) == Usage(cores=1.0, projected_flops=4e9)


def test_a_multithreaded_version_takes_the_cores_its_class_allows():
    mt = Spec("mt", MT, min_cores=2, max_cores=16)

    assert usage(mt, host(n_cpus=8)).cores == 8.0
    assert usage(mt, host(n_cpus=64)).cores == 16.0
    assert usage(Spec("mt4", MT, min_cores=4, max_cores=8), host(n_cpus=2)) == Refusal(
        "mt4 needs 4 cores; this computer has 2"
    )


def test_cpu_features_are_required():
    avx = Spec("avx2", CPU, cpu_features=frozenset({"avx2"}))

    assert isinstance(usage(avx, host(cpu_features=frozenset({"sse2", "avx2"}))), Usage)
    assert usage(avx, host(cpu_features=frozenset({"sse2"}))) == Refusal("avx2 needs the CPU features avx2")


def test_a_gpu_version_runs_on_a_gpu_that_meets_its_class():
    found = usage(CUDA, host(gpus=(H100,)))

    assert isinstance(found, Usage)
    assert (found.gpu, found.cores, found.projected_flops) == (H100, 0.5, 4e9 * 20)


def test_gpu_refusals_say_why():
    old_driver = Gpu("nvidia", "cuda", "GTX 970", 1, 4 * GIB, "470.1", "5.2")
    small = Gpu("nvidia", "cuda", "GT 710", 1, GIB, "535.1", "3.5")
    amd = Gpu("amd", "opencl", "Radeon RX 6800", 1, 16 * GIB, "3590.0", "", "OpenCL 2.0")

    assert "driver 470.1 is older than 525" in usage(CUDA, host(gpus=(old_driver,))).reason
    assert "1024 MiB of memory, under 2048" in usage(CUDA, host(gpus=(small,))).reason
    assert "is not nvidia" in usage(CUDA, host(gpus=(amd,))).reason
    assert usage(CUDA, host()) == Refusal("cuda needs a GPU; none was found")
    assert usage(CUDA, host(gpus=(H100,), use_gpus=False)) == Refusal("you asked not to use GPUs")
    assert isinstance(usage(OPENCL, host(gpus=(amd,))), Usage)
    # An NVIDIA GPU the client found through OpenCL serves an OpenCL class too.
    nvidia_cl = Gpu("nvidia", "cuda", "RTX 3090", 2, 24 * GIB, "535.1", "8.6", "OpenCL 3.0 CUDA")
    assert isinstance(usage(OPENCL, host(gpus=(nvidia_cl,))), Usage)


def test_versions_compare_number_by_number():
    assert version_key("535.104.05") == (535, 104, 5)
    assert at_least("10.0", "9.0") and at_least("550.54.15", "525") and not at_least("8.6", "8.9")
    assert at_least("", "") and not at_least("", "1")


def test_platform_runtime_python_and_beta():
    linux = host(runtimes=frozenset({"python", "wasm", "native"}), python_version="3.11.4")

    assert compatible(VersionNeeds("any", "wasm"), linux, beta_ok=False) is None
    assert compatible(VersionNeeds("i686-pc-linux-gnu", "native"), linux, beta_ok=False) is None
    refused = compatible(VersionNeeds("arm64-apple-darwin", "native"), linux, beta_ok=False)
    assert refused is not None and refused.reason.startswith("no version for your platform")
    assert compatible(VersionNeeds("any", "python", python="3.12"), linux, beta_ok=False) == Refusal(
        "this version needs Python 3.12"
    )
    assert compatible(VersionNeeds("any", "python", python="3.11"), linux, beta_ok=False) is None
    assert compatible(VersionNeeds("any", "wasm", beta=True), linux, beta_ok=False) is not None
    assert compatible(VersionNeeds("any", "wasm", beta=True), linux, beta_ok=True) is None
    assert compatible(
        VersionNeeds("any", "native"), host(runtimes=frozenset({"python"})), beta_ok=True
    ) == Refusal("this client cannot run native apps")


def test_homogeneous_redundancy_classes():
    intel = host(os_name="Linux", cpu_vendor="GenuineIntel", cpu_family="6", cpu_model="Xeon Gold 6130")

    assert hr_class(intel, 0) == ""
    assert hr_class(intel, 1) == "1:Linux/GenuineIntel"
    assert hr_class(intel, 2) == "2:Linux/GenuineIntel/6/Xeon Gold 6130"
    assert hr_class(host(os_name="Linux", cpu_vendor="AuthenticAMD"), 1) != hr_class(intel, 1)
    assert hr_class(host(os_name="linux", cpu_vendor="Intel"), 1) == "1:Linux/GenuineIntel"
    assert hr_class(host(os_name="Linux", cpu_vendor="MyOwnVendor 9000"), 1) == "1:Linux/other"
    assert hr_class(host(os_name="macOS", cpu_vendor="Apple"), 1) == "1:Darwin/Apple"


# -- properties ------------------------------------------------------------------------------
gpus = st.builds(
    Gpu,
    vendor=st.sampled_from(["nvidia", "amd", "intel", "apple", "other"]),
    api=st.sampled_from(["cuda", "opencl", "metal"]),
    model=st.text(max_size=8),
    count=st.integers(0, 8),
    memory_bytes=st.integers(0, 64 * GIB),
    driver_version=st.sampled_from(["", "390.1", "470.82", "525.60.13", "550.54.15", "3590.0"]),
    compute_capability=st.sampled_from(["", "3.5", "5.2", "7.5", "8.6", "9.0"]),
    opencl_version=st.sampled_from(["", "OpenCL 1.2", "OpenCL 3.0"]),
)
hosts = st.builds(
    HostResources,
    platforms=st.just(LINUX),
    n_cpus=st.integers(1, 256),
    memory_bytes=st.integers(0, 512 * GIB),
    flops=st.floats(0, 1e11),
    cpu_features=st.frozensets(st.sampled_from(["sse2", "avx", "avx2", "avx512f", "neon"])),
    gpus=st.lists(gpus, max_size=3).map(tuple),
    use_gpus=st.booleans(),
)
specs = st.one_of(
    st.builds(
        Spec,
        name=st.just("cpu"),
        kind=st.just(CPU),
        cpu_features=st.frozensets(st.sampled_from(["sse2", "avx2"]), max_size=1),
    ),
    st.integers(1, 64).flatmap(
        lambda low: st.builds(
            Spec,
            name=st.just("mt"),
            kind=st.just(MT),
            min_cores=st.just(low),
            max_cores=st.integers(low, 128),
        )
    ),
    st.builds(
        Spec,
        name=st.just("gpu"),
        kind=st.just(GPU),
        gpu_vendor=st.sampled_from(["", "nvidia", "amd"]),
        gpu_api=st.sampled_from(["", "cuda", "opencl"]),
        min_gpu_memory_bytes=st.integers(0, 16 * GIB),
        min_driver_version=st.sampled_from(["", "450", "525"]),
        min_compute_capability=st.sampled_from(["", "5.0", "8.0"]),
        gpu_speedup=st.floats(0.1, 100),
    ),
)


@given(specs, hosts)
def test_a_usage_always_fits_the_host_and_the_class(spec, machine):
    found = usage(spec, machine)
    if isinstance(found, Refusal):
        assert found.reason
        return
    assert spec.cpu_features <= machine.cpu_features
    assert found.projected_flops >= 0
    if spec.kind == MT:
        assert spec.min_cores <= found.cores <= min(spec.max_cores, machine.n_cpus)
    elif spec.kind == CPU:
        assert found.cores == 1.0
    else:
        gpu = found.gpu
        assert gpu is not None and gpu in machine.gpus and machine.use_gpus and gpu.count >= 1
        assert gpu.memory_bytes >= spec.min_gpu_memory_bytes
        assert not spec.gpu_vendor or gpu.vendor == spec.gpu_vendor
        assert at_least(gpu.driver_version, spec.min_driver_version)
        assert at_least(gpu.compute_capability, spec.min_compute_capability)


@given(hosts)
def test_a_host_that_hides_its_gpus_gets_no_gpu_work_and_counts_none(machine):
    hidden = HostResources(**{**machine.__dict__, "use_gpus": False})

    assert gpu_count(hidden) == 0
    assert isinstance(usage(CUDA, hidden), Refusal) and isinstance(usage(OPENCL, hidden), Refusal)
