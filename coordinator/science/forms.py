"""The admin's "new batch" form: an app, its parameters (a file or typed JSON), redundancy,
deadline and priority. Validation is the batch service itself, so the form and the API
refuse exactly the same things, and a refused form leaves nothing behind."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

import workunits
from coordinator.core.errors import DomainError
from coordinator.science import parameters, services
from coordinator.work.lifecycle import Policy
from coordinator.work.models import App, Batch


def app_choices() -> list[tuple[str, str]]:
    """Apps a batch can use now: in workunits/ and published at least once."""
    published = set(App.objects.filter(versions__isnull=False).values_list("name", flat=True))
    return [(name, name) for name in workunits.available() if name in published]


def examples_help() -> str:
    lines = ["Leave empty when you upload a JSON file. For a CSV table, the other parameters go here."]
    for name, _ in app_choices():
        manifest = workunits.load(name).MANIFEST
        table = f" CSV columns: {', '.join(manifest.table_columns)}." if manifest.table_columns else ""
        lines.append(f"{name}: {json.dumps(dict(manifest.example_parameters))}{table}")
    return "\n".join(lines)


class BatchSubmitForm(forms.ModelForm):
    app_name = forms.ChoiceField(label="App", choices=())
    parameter_file = forms.FileField(
        required=False,
        allow_empty_file=True,  # the parameter reader refuses it, saying so by the file's name
        help_text="a .json file of the app's parameters, or a .csv table for apps that take one",
    )
    parameters_json = forms.CharField(
        label="Parameters (JSON)", required=False, widget=forms.Textarea(attrs={"rows": 6, "cols": 80})
    )
    deadline_hours = forms.FloatField(
        label="Deadline (hours)",
        initial=24 * 7,
        min_value=0.01,
        max_value=24 * 365,
        help_text="how long a host has for one task before it is sent to another",
    )

    class Meta:
        model = Batch
        fields = [
            "name",
            "min_quorum",
            "target_nresults",
            "max_error_results",
            "max_total_results",
            "priority",
        ]
        help_texts = {
            "min_quorum": "how many agreeing results make a unit's result valid",
            "target_nresults": "how many copies of each unit go out at first",
            "priority": "-100 to 100; higher is sent first among your own batches",
        }

    def __init__(self, *args: Any, owner: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        cast(forms.ChoiceField, self.fields["app_name"]).choices = app_choices()
        self.fields["parameters_json"].help_text = examples_help()

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        try:
            self.submission = self.check(data)
        except DomainError as error:
            raise ValidationError(error.message, code=error.code) from error
        return data

    def _post_clean(self) -> None:
        """The batch is checked and made by the service (``check_submission``, then
        ``record_batch`` when the admin saves); the ModelForm's own copy would repeat it."""

    def check(self, data: dict[str, Any]) -> services.Submission:
        """Read the parameters and check the batch whole; nothing is written here."""
        module = services.science_app(data["app_name"])
        typed = (data.get("parameters_json") or "").strip()
        try:
            base = parameters.parse_json_parameters(typed) if typed else {}
        except DomainError as error:
            raise ValidationError({"parameters_json": error.message}) from error
        upload = data.get("parameter_file")
        if upload is not None:
            try:
                got = parameters.read_parameter_file(
                    module.MANIFEST, upload.name, upload.read(parameters.parameter_file_limit() + 1), base
                )
            except DomainError as error:
                raise ValidationError({"parameter_file": f"{upload.name}: {error.message}"}) from error
        elif typed:
            got = parameters.Parameters(base)
        else:
            raise ValidationError("upload a parameter file or type the parameters", code="no_parameters")
        policy = Policy(
            min_quorum=data["min_quorum"],
            target_nresults=data["target_nresults"],
            max_error_results=data["max_error_results"],
            max_total_results=data["max_total_results"],
            delay_bound=max(1, round(data["deadline_hours"] * 3600)),
        )
        return services.check_submission(
            owner=self.owner,
            app_name=data["app_name"],
            name=data["name"],
            parameters=got.values,
            policy=policy,
            priority=data["priority"],
            table_lines=got.table_lines,
        )
