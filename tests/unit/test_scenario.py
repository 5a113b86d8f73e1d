"""Loading scenario scripts, and the one clear message a broken one gets."""

import textwrap

import pytest
from conftest import TINY

from lockprof.errors import ScenarioError
from lockprof.scenario import Query, Scenario, Schema, load_scenario

GOOD_SCHEMA = 'Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x")'


def write(tmp_path, body: str):
    path = tmp_path / "scenario.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_loads_a_scenario_and_hashes_its_source():
    loaded = load_scenario(TINY)
    assert loaded.scenario.name == "tiny"
    assert [s.name for s in loaded.scenario.schemas] == ["day", "namespace_day"]
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize(
    "body, expected",
    [
        ("scenario = (\n", "syntax error"),
        ("x = 1\n", "must define `scenario"),
        ("from lockprof import Scenario\nscenario = Scenario(name='a')\n", "TypeError"),
        ("import nonexistent_module_xyz\n", "ModuleNotFoundError"),
        (
            f"from lockprof import Scenario, Schema, Query\n"
            f"scenario = Scenario('a', [{GOOD_SCHEMA}], [Query('q', 'SELECT 1')], concurrency=[0])\n",
            "concurrency must be positive",
        ),
        (
            "from lockprof import Scenario, Schema, Query\n"
            "scenario = Scenario('a', [Schema('s', 'CREATE TABLE t (x UInt8)')], [Query('q', 'SELECT 1')])\n",
            "must name the table as {table}",
        ),
    ],
)
def test_broken_scenarios_name_the_file_and_the_problem(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_error_points_at_the_line_in_the_scenario(tmp_path):
    path = write(tmp_path, "x = 1\ny = 2\nraise ValueError('bad size')\n")
    with pytest.raises(ScenarioError, match=r"scenario\.py:3: ValueError: bad size"):
        load_scenario(path)


def test_missing_file():
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("does/not/exist.py")


def test_scenario_model_rejects_duplicates():
    schema = Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x")
    with pytest.raises(ScenarioError, match="schema names repeat"):
        Scenario("a", [schema, schema], [Query("q", "SELECT 1")])
