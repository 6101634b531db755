"""The JSON Schemas of docs/schema/, and a check that every JSON document losslens writes in the
test suite validates against its schema (installed by conftest.py).

Two places see every document: `report.jsondoc.dumps` (the analysis/series writer, used by the
CLI and the library alike) and the CLI's one output function, `cli.common.emit` (check and
skiplist documents too). A document whose `schema` names a schema in docs/schema/ is validated
there; one that does not validate fails the test that produced it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schema"
#: document `schema` field → schema file
FILES = {"losslens.analysis/1": "analysis.schema.json", "losslens.check/1": "check.schema.json",
         "losslens.skiplist/1": "skiplist.schema.json"}
validated: dict[str, int] = {name: 0 for name in FILES}
#: Messages of documents that broke their schema (conftest fails the test that wrote them: a
#: CLI command's AssertionError would otherwise be only an exit code).
failures: list[str] = []


def _validators() -> dict[str, Any]:
    import jsonschema
    from referencing import Registry, Resource

    docs = {name: json.loads((SCHEMAS / f).read_text(encoding="utf-8"))
            for name, f in FILES.items()}
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs.values())
    return {name: jsonschema.Draft202012Validator(doc, registry=registry)
            for name, doc in docs.items()}


_VALIDATORS: dict[str, Any] = {}


def validate(doc: Any) -> None:
    """Raise AssertionError when `doc` (a parsed losslens document) breaks its schema."""
    if not isinstance(doc, dict) or doc.get("schema") not in FILES:
        return
    if not _VALIDATORS:
        _VALIDATORS.update(_validators())
    errors = sorted(_VALIDATORS[doc["schema"]].iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        where = "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message[:200]}"
                          for e in errors[:5])
        message = f"{doc['schema']} document breaks {FILES[doc['schema']]}: {where}"
        failures.append(message)
        raise AssertionError(message)
    validated[doc["schema"]] += 1


def validating_dumps(dumps: Callable[..., str]) -> Callable[..., str]:
    def wrapper(doc: Any, *args: Any, **kwargs: Any) -> str:
        text = dumps(doc, *args, **kwargs)
        validate(json.loads(text))
        return text

    wrapper.validates = True  # type: ignore[attr-defined]
    return wrapper


def validating_emit(emit: Callable[..., None]) -> Callable[..., None]:
    def wrapper(text: str, *args: Any, **kwargs: Any) -> None:
        if text.lstrip().startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            validate(doc)
        return emit(text, *args, **kwargs)

    wrapper.validates = True  # type: ignore[attr-defined]
    return wrapper


def install() -> Callable[[], None]:
    """Wrap the writers; return the function that puts them back."""
    import importlib

    from losslens.report import jsondoc

    undo = []
    real = jsondoc.dumps
    jsondoc.dumps = validating_dumps(real)
    undo.append(lambda: setattr(jsondoc, "dumps", real))
    for name in ("common", "analyze", "check", "skiplist", "replay", "watch"):
        module = importlib.import_module(f"losslens.cli.{name}")
        if hasattr(module, "emit"):
            real_emit = module.emit
            setattr(module, "emit", validating_emit(real_emit))
            undo.append(lambda m=module, e=real_emit: setattr(m, "emit", e))

    def restore() -> None:
        for fn in undo:
            fn()

    return restore
