"""Markdown report: HTML from a log is shown, never interpreted."""
from __future__ import annotations

from losslens.report.markdown import cell, text


def test_html_in_log_text_becomes_entities():
    assert cell("lm|<img src=x onerror=alert(1)>&") == \
        "lm\\|&lt;img src=x onerror=alert(1)&gt;&amp;"
    assert text("<script>") == "&lt;script&gt;"
