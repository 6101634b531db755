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
