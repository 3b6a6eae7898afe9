"""The `medmm` command line itself: the Typer app, its own flags (--debug, --verbose, accepted before or
after the command), and what the commands share. The commands live in the modules beside it, by
what they work on; `medmm.cli.main` is the entry point.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="medmm: multimodal diagnostic assistant (DICOM + FHIR + vital signs). Research use only; not a medical device.",
)
state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on error."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not (verbose or debug):
        from medmm.io.dicom import quiet_pydicom_logging

        quiet_pydicom_logging()


def split_fractions(text: str) -> dict[str, float]:
    """--splits "0.7,0.15,0.15" as SynthConfig's three fractions (ConfigError naming the option otherwise)."""
    from medmm.errors import ConfigError

    try:
        train, val, test = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"expected three comma-separated fractions, got {text!r}", where="--splits") from None
    return {"train_fraction": train, "val_fraction": val, "test_fraction": test}


def jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {k: jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


GLOBAL_FLAGS = (
    "--debug",
    "--verbose",
    "-v",
)  # options of the command line itself, accepted before or after the command


def global_flags_first(argv: list[str]) -> list[str]:
    """`argv` with the command line's own flags moved before the command (`medmm predict ... --debug` works as
    `medmm --debug predict ...`); nothing after a `--` is moved."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]
