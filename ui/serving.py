"""Serving the interface: the default model, the work folder's life, and the launch settings.

`serve(...)` (behind `medmm serve`) finds or trains the model, deletes the work folders that
dead servers left behind, makes its own, and launches with the security settings: loopback by
default, optional login with throttled wrong passwords, the privacy middleware (ui.guard),
an upload size limit, file access only to the app's public folder, no analytics, no run
history in the browser, no monitoring page, never a share link. The work folder is deleted at
exit, SIGTERM included.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from ui.auth import LoginThrottle, load_users, make_checker
from ui.guard import PrivacyGuard
from ui.style import CSS
from ui.workdir import Cleanup, make_work_dir, remove_stale_work_dirs

log = logging.getLogger(__name__)
ENV_PACS = "MEDMM_DICOMWEB_URL"
DEFAULT_MAX_FILE_SIZE = "200mb"
PUBLIC = "public"  # the only folder (besides Gradio's own uploads and cache) the file route serves
APP_FOLDERS = ("cases", "gradio")  # what the app writes inside a work folder it was given


def default_cache_dir() -> Path:
    """Where the embedded default model is trained and kept: $MEDMM_CACHE/demo, else ~/.cache/medmm/demo."""
    root = os.environ.get("MEDMM_CACHE") or str(Path.home() / ".cache" / "medmm")
    return Path(root) / "demo"


def ensure_default_model(cache_dir: Path | None = None, *, quick: bool = False) -> Path:
    """The embedded default's checkpoint folder, trained by `medmm demo`'s code path first when not cached."""
    from medmm.cli.doors import TrainingRecipes
    from medmm.demo import DemoOptions, model_is_cached, run_demo

    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not model_is_cached(out / "model"):
        log.info("training the embedded default model once (it is kept for later runs)")
        run_demo(DemoOptions(out=out, quick=quick), TrainingRecipes)
    return out / "model"


def configure_gradio_paths(work_dir: Path) -> None:
    """Point Gradio's upload folder and cache inside the app's own folder (call before building the app).

    Process-wide: Gradio reads both from the environment at each upload, so one process serves one app.
    """
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(work_dir / "gradio" / "examples")


def launch_options(
    work_dir: Path,
    host: str,
    port: int | None,
    users: dict[str, str],
    max_file_size: str | int,
    *,
    throttle: LoginThrottle | None = None,
) -> dict:
    """Keyword arguments for `Blocks.launch` carrying the security settings (`throttle`: the login back-off; a default one when None)."""
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "auth": make_checker(users) if users else None,
        "auth_message": "medmm: research use only. Sign in." if users else None,
        "max_file_size": max_file_size,
        "allowed_paths": [str((work_dir / PUBLIC).resolve())],
        "show_error": False,
        "ssr_mode": False,
        "mcp_server": False,
        "pwa": False,
        "enable_monitoring": False,
        "run_history": False,
        "footer_links": ["api", "settings"],
        "quiet": True,
        "css": CSS,
        "theme": gr.themes.Default(
            font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
        ),
        "app_kwargs": {
            "openapi_url": None,
            "middleware": [Middleware(PrivacyGuard, throttle=(throttle or LoginThrottle()) if users else None)],
        },
    }


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    audit: str | Path | None = None,
    audit_store: str | Path | None = None,
    auth_file: str | Path | None = None,
    cohort: str | Path | None = None,
    pacs_url: str | None = None,
    work_dir: str | Path | None = None,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
) -> tuple[gr.Blocks, str]:
    """Launch the interface; returns (app, local URL). With `block=False` it serves from a background thread.

    `model` None: the embedded default (trained into the cache on first use), with its demo
    cohort pickable. `port` None: 7860, or the next free port after it. `audit`: the audit folder (default: next to the model). Users come from
    `auth_file` and $MEDMM_USERS; with none, no login is asked for. `pacs_url` (or
    $MEDMM_DICOMWEB_URL): a DICOMweb root to search and pull studies from. `work_dir` None: a
    new temporary folder, deleted at exit; a given one keeps what it held, less what the app wrote.
    """
    from ui.app import build_app
    from ui.session import ClinicianService, Settings

    if model is None:
        model_dir = ensure_default_model()
        cohort = cohort if cohort is not None else model_dir.parent / "cohort"
    else:
        model_dir = Path(model)
    users = load_users(auth_file)
    if not users and not _is_loopback(host):
        log.warning("serving on a non-loopback address without login: anyone who can reach it can use it")
    remove_stale_work_dirs()
    work = Path(work_dir) if work_dir is not None else make_work_dir()
    configure_gradio_paths(work)
    settings = Settings(
        model_dir=model_dir,
        work_dir=work,
        audit_dir=Path(audit) if audit else None,
        audit_store=Path(audit_store) if audit_store else None,
        cohort_dir=Path(cohort) if cohort else None,
        pacs_url=pacs_url or os.environ.get(ENV_PACS) or None,
    )
    service = ClinicianService(settings)
    app = build_app(service)

    def clean() -> None:
        try:
            app.close()
        finally:
            service.close()
            if work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
            else:
                for name in APP_FOLDERS:
                    shutil.rmtree(work / name, ignore_errors=True)

    cleanup = Cleanup(clean)
    if block:
        cleanup.install_signal_handlers()
    _, url, _ = app.launch(**launch_options(work, host, port, users, max_file_size), prevent_thread_lock=not block)
    return app, url
