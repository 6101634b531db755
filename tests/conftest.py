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
