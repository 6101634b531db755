"""Shared fixtures: the corpus of real logs (skipped when absent) and a CLI runner."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def corpus() -> Path:
    """`../shared/corpus`: real public logs. Tests using it skip on a user's clone."""
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(autouse=True, scope="session")
def json_outputs_validate_against_the_schema():
    """Every losslens JSON document written in the test suite validates against docs/schema/
    (tests/schema_check.py)."""
    import schema_check

    restore = schema_check.install()
    yield
    restore()


@pytest.fixture(autouse=True)
def json_outputs_of_this_test_validate(json_outputs_validate_against_the_schema):
    import schema_check

    seen = len(schema_check.failures)
    yield
    broken = schema_check.failures[seen:]
    del schema_check.failures[seen:]
    if broken:
        pytest.fail("; ".join(broken), pytrace=False)


@pytest.fixture(autouse=True)
def no_guard_worker_left_behind():
    """Every guard a test starts in the asynchronous mode is closed by its end (its worker
    process gone): a leaked worker would outlive the test."""
    import sys

    worker = sys.modules.get("losslens.guard.worker")
    before = set(worker.running()) if worker else set()
    yield
    worker = sys.modules.get("losslens.guard.worker")
    left = sorted(set(worker.running()) - before) if worker else []
    if left:
        worker.close_workers(left)  # not into the next test
        pytest.fail(f"guard worker process(es) {left} left running: close the guard "
                    "(`with Guard(...)` or the `guards` fixture)", pytrace=False)


@pytest.fixture
def guards():
    """Make guards as `Guard(...)` does; each is closed when the test ends."""
    from losslens.guard import Guard

    made = []

    def make(*args, **kwargs):
        made.append(Guard(*args, **kwargs))
        return made[-1]

    yield make
    for g in made:
        g.close()


@pytest.fixture(scope="session")
def cpu_pace() -> float:
    """CPU seconds this machine takes for a reference piece of detector-like work (a sort and a
    129-point rolling median of 1M floats; the least of three tries). Speed tests bound their
    CPU time as a multiple of it, so that they catch a change that makes the code slower, not
    a slower machine (0.43 s on the 2-core VM where the bounds below were last checked)."""
    import time

    import numpy as np
    import pandas as pd

    x = np.random.default_rng(0).standard_normal(1_000_000)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        np.sort(x)
        pd.Series(x).rolling(129).median()
        best = min(best, time.process_time() - t0)
    return best


@pytest.fixture
def watch_events(runner):
    """`losslens watch PATH --once -f json` through the CLI: each event as watch last settled
    it (the last line per id), after asserting the command exited 0."""
    import json

    def run(path) -> list[dict]:
        from losslens.cli import app

        wt = runner.invoke(app, ["watch", str(path), "--once", "-f", "json"])
        assert wt.exit_code == 0, wt.stderr
        last: dict = {}
        for line in wt.stdout.splitlines():
            e = json.loads(line)
            last[e["id"]] = e
        return list(last.values())
    return run
