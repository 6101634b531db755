"""The project documents itself: docs/ is what users read, and nothing they see cites a document
that is not in the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _texts():
    for folder in (ROOT / "losslens", ROOT / "docs", ROOT / "examples", ROOT / "sample_logs",
                   ROOT / "benchmarks"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".md", ".json", ".txt", ".svg", ".html"):
                yield path, path.read_text(encoding="utf-8", errors="replace")
    yield ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8")


#: the team's working notes, kept outside the repository: no user-facing text may cite them
INTERNAL = re.compile(r"DESIGN §|DESIGN\.md|LOG_FORMATS|BASELINES\.md|STYLE_NOTES")


def test_no_citation_of_an_internal_document():
    assert [str(p.relative_to(ROOT)) for p, text in _texts() if INTERNAL.search(text)] == []


def test_every_source_a_finding_cites_is_in_the_playbook():
    from losslens.diagnosis import CITES

    playbook = (ROOT / "docs" / "playbook.md").read_text(encoding="utf-8")
    arxiv = {m for cite in CITES.values() for m in re.findall(r"\d{4}\.\d{5}", cite)}
    assert arxiv and {a for a in arxiv if a not in playbook} == set()
    assert "Understanding Training Loss Patterns" in playbook and "request #118" in playbook


def test_links_between_the_docs_resolve():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(((?:docs/|schema/|\./)?[\w./-]+\.(?:md|json))\)",
                                 path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists(), f"{path.name} links to {target}"


def test_architecture_shows_how_to_add_a_detector_and_a_format():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for needle in ("## Add a detector", "**One registry line**", "**One diagnosis rule**",
                   "## Add a format", "losslens/detectors/__init__.py",
                   "losslens/readers/__init__.py", "tests/test_import_contract.py"):
        assert needle in text
