"""Parameter files: every refusal says where the problem is."""

import pytest

from coordinator.core.errors import InvalidInput, PayloadTooLarge
from coordinator.science.parameters import locate_in_table, read_parameter_file
from workunits import montecarlo_pi, sir_sweep

SIR = sir_sweep.MANIFEST
BASE = {"seed": 1, "population": 500, "initial_infected": 5, "days": 60, "runs": 2}


def test_a_json_file_is_the_parameters():
    got = read_parameter_file(montecarlo_pi.MANIFEST, "p.json", b'{"seed": 1, "units": 2}', {})
    assert got.values == {"seed": 1, "units": 2} and got.table_lines == []


def test_a_csv_table_joins_the_other_parameters_under_the_apps_table_parameter():
    data = b"gamma,beta\r\n0.1,0.2\n\n0.3, 0.4\n"
    got = read_parameter_file(SIR, "sweep.CSV", data, BASE)
    assert got.values == {**BASE, "points": [{"gamma": 0.1, "beta": 0.2}, {"gamma": 0.3, "beta": 0.4}]}
    assert got.table_lines == [2, 4]


@pytest.mark.parametrize(
    ("manifest", "name", "data", "message"),
    [
        (SIR, "p.json", b"", "is empty"),
        (SIR, "p.json", b"  \n ", "is empty"),
        (SIR, "p.json", b'{"seed": 1,\n "runs": }', "line 2, column 10"),
        (SIR, "p.json", b"[1, 2]", "must be a JSON object"),
        (SIR, "p.json", b'{"seed": NaN}', "NaN is not a number"),
        (SIR, "p.json", b"\xff\xfe{}", "not UTF-8 text"),
        (SIR, "p.txt", b"{}", "must end in .json or .csv"),
        (
            SIR,
            "p.csv",
            b"beta,delta\n0.1,0.2\n",
            "line 1: the columns must be beta, gamma (missing gamma; unknown 'delta')",
        ),
        (SIR, "p.csv", b"beta,gamma,beta\n0.1,0.2,0.3\n", "a column is repeated"),
        (SIR, "p.csv", b"beta,gamma\n", "a header but no rows"),
        (SIR, "p.csv", b"beta,gamma\n0.1,0.2\n0.1,abc\n", "line 3, gamma: 'abc' is not a number"),
        (SIR, "p.csv", b"beta,gamma\n0.1,inf\n", "line 2, gamma: 'inf' is not a finite number"),
        (SIR, "p.csv", b"beta,gamma\n0.1\n", "line 2: 1 fields, the header has 2"),
        (montecarlo_pi.MANIFEST, "p.csv", b"a\n1\n", "montecarlo_pi takes no CSV table"),
    ],
)
def test_bad_files_are_refused_with_where(manifest, name, data, message):
    with pytest.raises(InvalidInput) as refused:
        read_parameter_file(manifest, name, data, BASE)
    assert message in refused.value.message


def test_a_file_over_the_limit_is_refused_before_it_is_read(settings):
    settings.BATCH_PARAMETER_FILE_MAX_BYTES = 100
    with pytest.raises(PayloadTooLarge, match="101 bytes; at most 100"):
        read_parameter_file(SIR, "p.json", b"{" + b" " * 99 + b"}", {})


def test_the_splitters_complaint_about_a_row_names_the_csv_line():
    message = "the parameters do not work for sir_sweep: points[1].gamma is 11: each rate must be…"
    assert locate_in_table(message, SIR, [2, 5]) == (
        "the parameters do not work for sir_sweep: line 5, gamma is 11: each rate must be…"
    )
    assert locate_in_table("points[7] must be an object", SIR, [2]) == "points[7] must be an object"
