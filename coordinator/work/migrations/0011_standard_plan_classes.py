"""The standard plan classes as rows, so the admin shows them from the start and admins can
edit them (docs/platforms.md); the scheduler knows them even without the rows."""

from django.db import migrations

from coordinator.work.plan_classes import STANDARD

DESCRIPTIONS = {
    "cpu": "one CPU core",
    "mt": "multithreaded: 2 to 16 cores",
    "cuda": "an NVIDIA GPU with CUDA: compute capability 5.0, 2 GiB, driver 525",
    "opencl": "any GPU with OpenCL and 1 GiB",
}


def create(apps, schema_editor):
    PlanClass = apps.get_model("work", "PlanClass")
    for spec in STANDARD.values():
        PlanClass.objects.get_or_create(
            name=spec.name,
            defaults={
                "kind": spec.kind,
                "description": DESCRIPTIONS.get(spec.name, ""),
                "min_cores": spec.min_cores,
                "max_cores": spec.max_cores,
                "cpu_features": sorted(spec.cpu_features),
                "gpu_vendor": spec.gpu_vendor,
                "gpu_api": spec.gpu_api,
                "min_gpu_memory_bytes": spec.min_gpu_memory_bytes,
                "min_driver_version": spec.min_driver_version,
                "min_compute_capability": spec.min_compute_capability,
                "gpu_speedup": spec.gpu_speedup,
                "cpu_per_gpu_task": spec.cpu_per_gpu_task,
            },
        )


def remove(apps, schema_editor):
    apps.get_model("work", "PlanClass").objects.filter(name__in=list(STANDARD)).delete()


class Migration(migrations.Migration):
    dependencies = [("work", "0010_platforms_and_plan_classes")]
    operations = [migrations.RunPython(create, remove)]
