"""The plan class model (in its own module to keep models.py short; models.py exports it)."""

from django.db import models
from django.db.models import F, Q

PLAN_CLASS_KINDS = [("cpu", "one CPU core"), ("mt", "multithreaded"), ("gpu", "GPU")]


class PlanClass(models.Model):
    """What a host needs to run an app version and what a task uses (BOINC's
    plan_class_spec.xml); matched by the pure ``work.plan_classes``."""

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=8, choices=PLAN_CLASS_KINDS, default="cpu")
    description = models.CharField(max_length=200, blank=True)
    min_cores = models.PositiveSmallIntegerField(default=1)
    max_cores = models.PositiveSmallIntegerField(default=1, help_text="mt: the most cores a task gets")
    cpu_features = models.JSONField(
        default=list, blank=True, help_text='CPU features every host needs, e.g. ["avx2"]'
    )
    gpu_vendor = models.CharField(
        max_length=16, blank=True, help_text="nvidia, amd, intel, apple; blank: any"
    )
    gpu_api = models.CharField(max_length=16, blank=True, help_text="cuda, opencl")
    min_gpu_memory_bytes = models.PositiveBigIntegerField(default=0)
    min_driver_version = models.CharField(max_length=32, blank=True)
    min_compute_capability = models.CharField(max_length=8, blank=True)
    gpu_speedup = models.FloatField(
        default=1.0, help_text="projected speed against one CPU core, until the host has measured it"
    )
    cpu_per_gpu_task = models.FloatField(default=0.5, help_text="GPU classes: CPU cores a task keeps busy")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["cpu", "mt", "gpu"]), name="plan_class_kind"),
            models.CheckConstraint(
                condition=Q(min_cores__gte=1, max_cores__gte=F("min_cores")), name="plan_class_cores"
            ),
            models.CheckConstraint(condition=Q(gpu_speedup__gt=0), name="plan_class_speedup"),
        ]

    def __str__(self) -> str:
        return self.name
