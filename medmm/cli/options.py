"""Options the commands share, each documented once.

An option that is a field of one of medmm's dataclasses takes its help from the field's attribute
docstring (`doc(SynthConfig, "seed")`, read by medmm.config.attribute_docs); the interface's
settings are read from their source through the doors, without importing the interface. Options
several commands share (the checkpoint, the audit trail, JSON output) are made here, once.
"""

from __future__ import annotations

from typing import Any

import typer

from medmm.config import attribute_docs


def doc(cls: type, name: str) -> str:
    """The attribute docstring of field `name` of dataclass `cls` (the option's help)."""
    return attribute_docs(cls)[name]


def model_option(help: str = "Checkpoint folder (e.g. medmm-demo/model).") -> Any:
    return typer.Option(..., "--model", help=help)


def json_option(what: str) -> Any:
    return typer.Option(False, "--json", help=f"Print {what}.")


def seed_option(help: str = "Seed of the bootstrap resamples.") -> Any:
    return typer.Option(0, "--seed", help=help)


TRAIL_HELP = "Audit trail (SQLite) of {what} [default: $MEDMM_AUDIT_STORE, else {fallback}]."


def trail_option(what: str, fallback: str = "~/.medmm/audit.sqlite", *aliases: str) -> Any:
    """--trail: the SQLite audit trail (AuditEvent and Provenance of each prediction)."""
    return typer.Option(None, "--trail", *aliases, help=TRAIL_HELP.format(what=what, fallback=fallback))
