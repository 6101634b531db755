"""docs/schema/: the JSON contract as JSON Schema (draft 2020-12), and the suite-wide check."""
from __future__ import annotations

import json

import pytest

import schema_check
from losslens.cli import app


@pytest.mark.parametrize("name", sorted(schema_check.FILES.values()))
def test_schemas_are_valid_draft_2020_12(name):
    import jsonschema

    doc = json.loads((schema_check.SCHEMAS / name).read_text())
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)


def test_every_json_writer_is_checked(runner, tmp_path, monkeypatch):
    from losslens.cli import analyze, check, common, skiplist
    from losslens.report import jsondoc

    assert getattr(jsondoc.dumps, "validates", False)
    for module in (analyze, check, common, skiplist):
        assert getattr(module.emit, "validates", False), module.__name__
    monkeypatch.chdir(tmp_path)
    log = str(schema_check.SCHEMAS.parents[1] / "sample_logs" / "megatron_gpt_spikes.log")
    before = dict(schema_check.validated)
    for args in (["analyze", log, "-f", "json"], ["check", log, "-f", "json"],
                 ["skiplist", log, "-f", "json"], ["series", log, "-f", "json"]):
        assert runner.invoke(app, args).exit_code in (0, 1)
    after = schema_check.validated
    assert after["losslens.analysis/1"] >= before["losslens.analysis/1"] + 2
    assert after["losslens.check/1"] == before["losslens.check/1"] + 1
    assert after["losslens.skiplist/1"] == before["losslens.skiplist/1"] + 1


def test_a_document_that_breaks_the_schema_fails():
    from losslens.report.jsondoc import dumps

    doc = {"schema": "losslens.analysis/1", "version": "x", "runs": [{"run": "r"}]}
    with pytest.raises(AssertionError, match="runs/0: 'source' is a required property"):
        dumps(doc)
    assert schema_check.failures  # and the test that wrote it fails (conftest)
    schema_check.failures.clear()
    event = {"id": "spike-1", "kind": "spike", "tag": "loss", "start_step": 1, "peak_step": 2,
             "end_step": None, "severity": "fatal", "recovery": None, "recovery_steps": None,
             "magnitude": 2.0, "details": {}}
    with pytest.raises(AssertionError, match="'fatal' is not one of"):
        schema_check.validate({"schema": "losslens.check/1", "version": "x", "passed": True,
                               "exit_code": 0, "fail_on": "critical", "settings": None,
                               "runs": [{"run": "r", "source": "s", "format": "f",
                                         "passed": True, "checks": [], "findings": [],
                                         "events": [event], "ignored_events": 0,
                                         "baseline": None}]})
    schema_check.failures.clear()


def test_event_kinds_fit_the_schema():
    import re

    from losslens.events import EVENT_KINDS

    pattern = json.loads((schema_check.SCHEMAS / "analysis.schema.json").read_text())[
        "$defs"]["event"]["properties"]["kind"]["pattern"]
    assert all(re.fullmatch(pattern.strip("^$"), k) for k in EVENT_KINDS)
