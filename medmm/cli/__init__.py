"""The `medmm` command line. Each subcommand is one typed function, in the module of what it works on:
data (synth, cohort build, inspect, deid), run (train, demo, predict), studies (evaluate, compare,
audit, explain, batch) and serve; the app and its own flags are in app, the doors to the
training recipes and the interface in doors.

Errors end with a non-zero exit and a one-line cause (no traceback unless --debug).
medmm is a research tool, not a medical device.
"""

from __future__ import annotations

import sys

import typer

from medmm.cli import data, run, serve, studies  # noqa: F401  (each registers its commands on the app)
from medmm.cli.app import app, global_flags_first, state
from medmm.cli.doors import TrainingRecipes
from medmm.errors import MedmmError

__all__ = ["TrainingRecipes", "app", "global_flags_first", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `medmm` console script."""
    argv = global_flags_first(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except MedmmError as err:
        if state["debug"]:
            raise
        typer.echo(f"error: {type(err).__name__}: {err}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors and anything unexpected: one line, no traceback
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if state["debug"]:
            raise
        typer.echo(f"error: {type(err).__name__}: {err} (run with --debug for the traceback)", err=True)
        sys.exit(1)
