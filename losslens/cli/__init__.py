"""The command line: thin commands over the library, registered in one place.

Each command lives in its own module of this package and uses only `cli.common` (the shared
options, the error boundary, reading and output) and the library's public names; nothing in
the library imports this package. Every command is registered through `common.guarded`, the
one error boundary: `LossLensError` → `Error: ...` on stderr, exit 2 (exit 1 is `check`'s
"findings"), never a traceback. Heavy modules load inside the commands: `--help` stays fast.
"""
from __future__ import annotations

from typing import Optional

import typer

from . import analyze as _analyze_cmd
from . import check as _check_cmd
from . import replay as _replay_cmd
from . import skiplist as _skiplist_cmd
from . import watch as _watch_cmd
from .common import Command, guarded

app = typer.Typer(
    name="losslens",
    help="Read a training run's logbook; find loss spikes, divergence, grokking, resume and "
         "rollback artefacts; say what to do.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    # plain click help: rich's help formatter imports rich.markdown, markdown-it and pygments
    # (~0.1 s CPU, 0.3 s wall on a busy machine) before printing a line
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"losslens {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")) -> None:
    """Read a training run's logbook; find loss spikes, divergence, grokking, resume and
    rollback artefacts; say what to do."""


#: name → command function, in the order `losslens --help` lists them.
COMMANDS = {
    "analyze": _analyze_cmd.analyze,
    "check": _check_cmd.check,
    "skiplist": _skiplist_cmd.skiplist,
    "watch": _watch_cmd.watch,
    "series": _analyze_cmd.series,
    "replay": _replay_cmd.replay,
    "formats": _analyze_cmd.formats,
}
for _name, _command in COMMANDS.items():
    app.command(name=_name, cls=Command)(guarded(_command))


def main() -> None:
    app()
