"""The benchmark harness's arithmetic and its reading of pytest summaries, on known values."""

from __future__ import annotations

import pytest

from benchmarks.common import ratio_line, spread, verdict


def test_spread_and_verdict_on_known_values() -> None:
    s = spread([0.95, 0.96, 0.97, 0.98, 0.99])
    assert s.median == pytest.approx(0.97) and (s.low, s.high, s.n) == (0.95, 0.99, 5)
    assert 0.95 <= s.ci_low <= s.median <= s.ci_high <= 0.99
    assert verdict(s, 0.90, higher_is_better=True) == "met"
    assert verdict(s, 1.00, higher_is_better=True) == "not met"
    assert verdict(s, 0.97, higher_is_better=True).startswith("unclear")
    assert verdict(s, 1.30, higher_is_better=False) == "met"
    assert verdict(spread([1.0, 1.0]), 0.9, higher_is_better=True).startswith("not judged")
    assert ratio_line("x", [1.0, 1.0, 1.0], 0.9).endswith("target >= 0.9: met")


def test_suite_loop_reads_pytest_summaries() -> None:
    from benchmarks.suite_loop import parse_counts, parse_failures

    output = ("....F.\nFAILED tests/test_a.py::test_x - assert 1 >= 2\nERROR tests/test_b.py::test_y\n"
              "1 failed, 190 passed, 5 skipped, 1 error in 480.10s (0:08:00)\n")
    assert parse_counts(output) == {"passed": 190, "failed": 1, "errors": 1, "skipped": 5, "xfailed": 0,
                                    "xpassed": 0}
    assert parse_failures(output) == ["tests/test_a.py::test_x", "tests/test_b.py::test_y"]
    assert parse_counts("no summary at all")["passed"] == 0
