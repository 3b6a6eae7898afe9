"""Nothing downloads at run time: hub look-ups, hub kernels and usage telemetry stay off.

Applied when `medmm` is first imported, before any library that reads these settings at
import. Values a user has set win (`os.environ.setdefault`); `MEDMM_ALLOW_DOWNLOADS=1` leaves
the model hub reachable, for a user who loads a hub id on purpose.

bitsandbytes asks a model hub for a faster CPU kernel when it is imported on a CPU with
AVX-512 BF16; offline, that look-up fails at once and two warnings say so. medmm never wants
that kernel, so those two lines are replaced by one debug line.
"""

from __future__ import annotations

import logging
import os

ALLOW_ENV = "MEDMM_ALLOW_DOWNLOADS"
TELEMETRY_OFF = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
}
HUB_OFF = {"HF_HUB_OFFLINE": "1"}
_HUB_KERNEL_LOGGERS = ("bitsandbytes.backends.cpu.ops", "bitsandbytes.backends.mps.ops", "kernels._internals.hf_hub")

log = logging.getLogger(__name__)


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


class _NoHubKernelNotice(logging.Filter):
    """Drops the hub-kernel notices of bitsandbytes and kernels (medmm asked for no hub)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "kernels-community" in text and ("Failed to load" in text or "publisher trust" in text):
            log.debug("bitsandbytes' hub kernel is not fetched (offline); its built-in kernels run")
            return False
        return True


def keep_offline() -> None:
    """Set the offline and no-telemetry defaults for this process and the processes it starts."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    if downloads_allowed():
        return
    for key, value in HUB_OFF.items():
        os.environ.setdefault(key, value)
    for name in _HUB_KERNEL_LOGGERS:
        logging.getLogger(name).addFilter(_NoHubKernelNotice())
