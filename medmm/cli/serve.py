"""`medmm serve`: the clinician interface."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medmm.cli.app import app
from medmm.cli.doors import interface_settings_docs, serve_ui

SETTINGS = interface_settings_docs()  # the interface's settings, each documented there once


@app.command()
def serve(
    model: Optional[Path] = typer.Option(
        None, "--model", help="Checkpoint folder [default: the embedded default, trained once if not cached]."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port [default: 7860 or the next free one]."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help=SETTINGS.get("cohort_dir")),
    audit: Optional[Path] = typer.Option(None, "--audit", help=SETTINGS.get("audit_dir")),
    audit_store: Optional[Path] = typer.Option(None, "--trail", "--audit-store", help=SETTINGS.get("audit_store")),
    auth_file: Optional[Path] = typer.Option(
        None, "--auth-file", help="Users allowed to log in (user:password-hash lines); also $MEDMM_USERS."
    ),
    pacs_url: Optional[str] = typer.Option(None, "--pacs-url", help=SETTINGS.get("pacs_url")),
    max_file_size: str = typer.Option("200mb", "--max-file-size", help="Largest accepted upload."),
) -> None:
    """The clinician interface (Gradio) for one patient at a time. Research use only."""
    serve_ui(
        model=model,
        host=host,
        port=port,
        cohort=cohort,
        audit=audit,
        audit_store=audit_store,
        auth_file=auth_file,
        pacs_url=pacs_url,
        max_file_size=max_file_size,
    )
