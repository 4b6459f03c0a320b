"""The client's version from its User-Agent, against the project's minimum."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tessera_client import __version__
from tessera_client.protocol import USER_AGENT

from coordinator.core.client_version import named_in, parse, refusal


def test_versions_compare_as_numbers_with_trailing_zeros_implied():
    assert parse("0.2") == parse("0.2.0") == (0, 2, 0, 0)
    assert parse("0.10.0") > parse("0.9.9") and parse("1.0") > parse("0.99.99.99")
    for bad in ("", "v1", "1.", ".1", "1..2", "1.2.3.4.5", "1.2a", "1234567", "\u0661.\u0662"):
        with pytest.raises(ValueError):
            parse(bad)


def test_the_client_names_its_own_version_in_its_user_agent():
    assert named_in(USER_AGENT) == __version__
    assert named_in("tessera-client/0.3.1 Python/3.9.18 linux") == "0.3.1"
    assert named_in("tessera-client/0.3.0rc1 Python/3.12") == "0.3.0"  # a pre-release counts as its release


@pytest.mark.parametrize(
    "user_agent",
    [
        "",
        "python-requests/2.32.5",  # a client from before it named itself
        "BOINC client (x86_64-pc-linux-gnu 7.20.5)",
        "not-tessera-client/9.9.9",
        "tessera-client/",
        "tessera-client/x.y",
        "tessera-client/1.2.3.4.5",  # not a version: it does not say
        "tessera-client/1234567",
        " " * 400 + "tessera-client/9.0.0",  # past the first 300 characters
    ],
)
def test_a_user_agent_without_a_version_names_none(user_agent):
    assert named_in(user_agent) is None


def test_a_client_older_than_the_minimum_or_silent_is_refused_with_how_to_upgrade():
    assert refusal("tessera-client/0.2.0", "") is None, "no minimum: any client may call"
    assert refusal("python-requests/2.32.5", "") is None
    assert refusal("tessera-client/0.2.0", "0.2") is None
    assert refusal("tessera-client/0.3.0 Python/3.11", "0.2.9") is None
    old = refusal("tessera-client/0.2.0 Python/3.11", "0.3.0")
    assert old == "this project needs tessera-client 0.3.0 or later (this one is 0.2.0); upgrade it"
    silent = refusal("python-requests/2.32.5", "0.1")
    assert silent is not None and "does not say its version" in silent


@given(st.text(max_size=400))
def test_any_user_agent_is_read_without_an_error(user_agent):
    version = named_in(user_agent)
    assert version is None or parse(version) >= (0,)
    refusal(user_agent, "1.0")
