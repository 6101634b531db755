"""Reporters: turn a Frame (and, once analysed, its events and findings) into output.

`render(analysis, fmt)` is the one place an Analysis becomes text in a named format (text,
json, markdown, html); every command that writes a report calls it. Only `terminal.py` and the
CLI import rich; the others return strings. Modules are imported on use (`--help` stays fast).
"""
from __future__ import annotations

from typing import Any

#: The report formats `render` knows.
REPORT_FORMATS = ("text", "json", "markdown", "html")


def render(analysis: Any, fmt: str) -> str:
    """The analysis as text (plain, no colours), json, markdown or html."""
    if fmt == "json":
        from .jsondoc import analysis_document, dumps

        return dumps(analysis_document(analysis)) + "\n"
    if fmt == "markdown":
        from .markdown import render as render_markdown

        return render_markdown(analysis)
    if fmt == "html":
        from .html import render as render_html

        return render_html(analysis)
    if fmt == "text":
        from .terminal import print_analysis

        return _plain(lambda console: print_analysis(analysis, console))
    from ..errors import InvalidParameterError

    raise InvalidParameterError(
        f"unknown report format {fmt!r}; known: {', '.join(REPORT_FORMATS)}")


def render_series(frame: Any) -> str:
    """What was read (runs, tags, roles, points), as the plain-text table."""
    from .terminal import print_series

    return _plain(lambda console: print_series(frame, console))


def _plain(draw: Any) -> str:
    import io

    from rich.console import Console

    buf = io.StringIO()
    draw(Console(file=buf, width=120, color_system=None, soft_wrap=False))
    return buf.getvalue()
