"""The OpenAPI schema documents what every operation can answer (found by tests/test_api_fuzz.py)."""

import pytest
from django.test import Client


def operations(schema):
    for path, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            if method != "parameters":
                yield f"{method.upper()} {path}", operation


@pytest.mark.django_db
def test_a_body_in_a_media_type_the_operation_does_not_read_gets_the_documented_415():
    # What the fuzzer sent: a raw body without a multipart Content-Type.
    answer = Client().generic("POST", "/api/v1/objects/upload", b"\x90a<8", content_type="")

    assert answer.status_code == 415
    assert answer.json()["error"] == "unsupported_media_type"
    schema = Client().get("/api/schema/?format=json").json()
    assert "415" in schema["paths"]["/api/v1/objects/upload"]["post"]["responses"]


@pytest.mark.django_db
def test_every_operation_that_takes_a_body_documents_415_and_no_other_does():
    schema = Client().get("/api/schema/?format=json").json()

    taking_a_body = {label for label, operation in operations(schema) if "requestBody" in operation}
    documenting_415 = {label for label, operation in operations(schema) if "415" in operation["responses"]}
    assert "POST /api/v1/scheduler" in taking_a_body
    assert documenting_415 == taking_a_body


@pytest.mark.django_db
def test_every_operation_documents_503_for_a_database_that_is_away():
    schema = Client().get("/api/schema/?format=json").json()

    missing = [label for label, operation in operations(schema) if "503" not in operation["responses"]]
    assert missing == []
