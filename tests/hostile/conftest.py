"""Fixtures of the hostile-input suite (the harness itself is tests/hostile/hostile_harness.py: a unique module
name, so the tests import it whatever other conftest.py files the run has loaded)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hostile_harness import (
    COUNTS,
    ENGINE_RSS_BUDGET,
    OUTCOMES,
    PEAKS,
    PROFILE,
    CLIRunner,
    Raw,
    _Engines,
)


@pytest.fixture(scope="session")
def engines(tmp_path_factory):
    holder = _Engines(tmp_path_factory.mktemp("engine"))
    yield holder
    if holder.current is not None:
        holder.current.stop()


@pytest.fixture
def engine(engines):
    return engines.get()


@pytest.fixture(scope="session")
def runner(tmp_path_factory):
    r = CLIRunner(tmp_path_factory.mktemp("weights"))
    yield r
    r.close()


@pytest.fixture
def raw(engine):
    r = Raw(engine.address)
    yield r
    r.close()


def pytest_terminal_summary(terminalreporter):
    if not any(COUNTS.values()):
        return
    peak = max(PEAKS.values(), default=0)
    terminalreporter.write_line(
        "hostile (%s profile): %d messages, %d files, %d CLI runs; engine peak memory %.0f MiB (budget %.0f MiB)"
        % (PROFILE, COUNTS["messages"], COUNTS["files"], COUNTS["cli_runs"], peak / 2 ** 20,
           ENGINE_RSS_BUDGET / 2 ** 20))
    terminalreporter.write_line("hostile outcomes: " + ", ".join("%s %d" % kv for kv in sorted(OUTCOMES.items())))
    out = os.environ.get("NC_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps({"profile": PROFILE, **COUNTS, "engine_peak_rss": peak,
                                         "outcomes": OUTCOMES}, indent=1))
