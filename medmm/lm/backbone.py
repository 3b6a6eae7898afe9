"""The language-model backbone: the embedded small Llama, any causal LM from a local folder, or a GGUF file.

`load_backbone` builds or loads the LM and its tokenizer, optionally quantizes the base to
4-bit NF4 with double quantization (bitsandbytes, through transformers' own loading path),
and sets up what trains: nothing, everything, LoRA adapters, or LoRA over the 4-bit base
(QLoRA). Fusion layers and heads are built elsewhere and never wrapped here.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch
from peft import PeftModel
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from medmm.errors import CheckpointError, ConfigError
from medmm.lm.adapters import FinetuneConfig, apply_finetune, default_target_modules, four_bit_available, nest_finetune
from medmm.lm.fourbit import layers_kept_unquantized, report_unfit, use_cpu_kernel
from medmm.lm.gguf import is_gguf_source, resolve_gguf
from medmm.lm.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_tokenizer

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class BackboneConfig:
    """Which causal LM to use, its size when embedded, and how it is fine-tuned."""

    source: str = EMBEDDED
    """"embedded" (the package's small Llama), a local folder of a Hugging Face causal LM, a GGUF
    file, the short name of a packaged GGUF model ("smollm2-135m"; see medmm.lm.gguf), or a
    model hub id (hub ids load only where a model hub is reachable)."""
    hidden_size: int = 256
    """Embedded model: width of the residual stream."""
    num_layers: int = 4
    """Embedded model: number of decoder layers."""
    num_heads: int = 4
    """Embedded model: attention heads per layer."""
    num_kv_heads: int = 4
    """Embedded model: key/value heads per layer (fewer than num_heads gives grouped-query attention)."""
    intermediate_size: int = 704
    """Embedded model: width of the SwiGLU MLP (a multiple of 64, as every 4-bit kernel needs)."""
    max_positions: int = 512
    """Embedded model: longest sequence, in tokens."""
    tie_embeddings: bool = True
    """Embedded model: share the input embedding and the LM head weights."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """What trains in the LM and how (medmm.lm.adapters.FinetuneConfig: method, LoRA, 4-bit base)."""
    compute_dtype: str = "auto"
    """Dtype of matmuls over 4-bit weights and of the loaded base: "auto" (float32 on CPU,
    bfloat16 on CUDA where supported, else float16), "float32", "bfloat16" or "float16"."""
    upcast_non_quantized: bool = True
    """QLoRA: keep peft's cast of 16-bit norms, embeddings and head to float32 (stabler, more memory)."""
    gradient_checkpointing: bool = False
    """Recompute decoder activations in the backward pass (less memory, slower)."""
    trust_remote_code: bool = False
    """Allow a local folder or hub model to run its own Python code; off unless you trust the source."""

    def __post_init__(self) -> None:
        self._validate()

    @staticmethod
    def upgrade_dict(data: Mapping[str, Any]) -> dict[str, Any]:
        """Read by medmm.config.from_dict before the fields: fine-tuning settings written beside the
        backbone's (older configs and checkpoints) are grouped under "finetune"."""
        return nest_finetune(data)

    def _validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range."""

        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"expected {expected}, got {getattr(self, name)!r}", where=f"backbone.{name}")

        if not isinstance(self.source, str) or not self.source.strip():
            raise bad("source", '"embedded", a local folder, a GGUF file or a model hub id')
        for f in fields(self):
            if f.type == "int" and (not isinstance(getattr(self, f.name), int) or getattr(self, f.name) < 1):
                raise bad(f.name, "a positive integer")
        if self.hidden_size % self.num_heads:
            raise bad("hidden_size", f"a multiple of num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise bad("num_kv_heads", f"a divisor of num_heads ({self.num_heads})")
        if not isinstance(self.finetune, FinetuneConfig):
            raise bad("finetune", "a FinetuneConfig")
        if self.compute_dtype != "auto" and self.compute_dtype not in COMPUTE_DTYPES:
            raise bad("compute_dtype", "auto | " + " | ".join(COMPUTE_DTYPES))


@dataclass
class Backbone:
    """A loaded causal LM ready to train or run, with its tokenizer."""

    model: nn.Module  # the causal LM; a peft PeftModel under lora / qlora
    tokenizer: PreTrainedTokenizerBase
    model_type: str  # Hugging Face model_type of the base ("llama", "gpt2", ...)
    quantized: bool  # base linear layers are bitsandbytes 4-bit
    source_sha256: str | None = None  # SHA-256 of the GGUF file the base was read from, when it was

    @property
    def base(self) -> PreTrainedModel:
        """The Hugging Face model under any LoRA wrapper (its decoder layers are where fusion attaches)."""
        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    @property
    def hidden_size(self) -> int:
        """Width of the LM's hidden states."""
        return int(self.base.config.hidden_size)


def embedded_config(cfg: BackboneConfig, vocab_size: int) -> LlamaConfig:
    """The Llama configuration of the embedded backbone at the sizes `cfg` gives."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def resolve_compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype "auto" stands for on `device`, or the named one."""
    if name != "auto":
        return COMPUTE_DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _bnb_config(cfg: BackboneConfig, compute_dtype: torch.dtype, keep: list[str]) -> BitsAndBytesConfig:
    storage = cfg.finetune.quant_storage
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.finetune.quant_type,
        bnb_4bit_use_double_quant=cfg.finetune.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=torch.uint8 if storage == "uint8" else COMPUTE_DTYPES[storage],
        llm_int8_skip_modules=[re.escape(name) for name in keep],  # transformers applies it to 4-bit too
    )


def _layers_to_keep(config: PretrainedConfig, cfg: BackboneConfig) -> list[str]:
    """Linear layers that stay in 16/32 bits under 4-bit loading, from the architecture alone (meta tensors)."""
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    return _keep_and_report(skeleton)


def _keep_and_report(model: nn.Module) -> list[str]:
    kept = layers_kept_unquantized(model)
    head = model.get_output_embeddings()
    report_unfit(kept, {n for n, m in model.named_modules() if m is head})
    return sorted(kept)


def _read_config(location: str, cfg: BackboneConfig) -> PretrainedConfig:
    """The model config at a local folder or hub id, with errors that say which and why."""
    path = Path(location).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                "expected a Hugging Face model folder (config.json, weights, tokenizer files)",
                path=path,
                where="config.json",
            )
        try:
            return AutoConfig.from_pretrained(str(path), trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"config.json is not a model configuration transformers can read ({type(exc).__name__})",
                path=path,
                where="config.json",
            ) from exc
    if not _HUB_ID.match(location) or path.exists():
        raise ConfigError("expected a local model folder; none exists here", path=location, where="backbone.source")
    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "not a local folder, and as a model hub id it loads only where a model hub is reachable "
            "and the id exists; download the model to a folder and give that path instead",
            path=location,
            where="backbone.source",
        ) from exc


def _load_pretrained(
    location: str, cfg: BackboneConfig, *, keep: list[str] | None, dtype: torch.dtype, device: torch.device
) -> PreTrainedModel:
    """AutoModelForCausalLM from a folder or hub id; with `keep` (layers left unquantized), 4-bit
    through transformers' bitsandbytes path."""
    quantize = keep is not None
    kwargs: dict = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
    if quantize:
        kwargs["quantization_config"] = _bnb_config(cfg, dtype, keep)
        kwargs["device_map"] = {"": str(device)}
    try:
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not load causal LM weights ({type(exc).__name__}: {exc})", path=location) from exc
    return model if quantize else model.to(device)


def _load_tokenizer(location: str, cfg: BackboneConfig) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"expected tokenizer files beside the weights ({type(exc).__name__})", path=location
        ) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad id; masked out anyway
    return tokenizer


def _check_embedded(config: PretrainedConfig, cfg: BackboneConfig, folder: str) -> None:
    """Refuse embedded weights whose architecture differs from the config (it would mislead)."""
    expected = {
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "intermediate_size": cfg.intermediate_size,
    }
    wrong = [
        f"{key} is {getattr(config, key, None)!r}, expected {value!r}"
        for key, value in expected.items()
        if getattr(config, key, None) != value
    ]
    if wrong:
        raise CheckpointError(
            "embedded backbone weights do not match the config: " + "; ".join(wrong),
            path=folder,
            where="config.json",
        )


def load_backbone(
    cfg: BackboneConfig, *, weights_dir: str | Path | None = None, device: str | torch.device = "cpu"
) -> Backbone:
    """Build or load the LM and its tokenizer on `device`, then set up what trains per `cfg.finetune` (its method).

    Embedded with no `weights_dir`: random initialisation (the demo trains it). Otherwise the
    weights come from `weights_dir` (a Hugging Face folder) or `cfg.source`. Under "qlora",
    if bitsandbytes cannot run 4-bit on `device`, it falls back to plain LoRA with a warning
    and `quantized=False`.
    """
    device = torch.device(device)
    dtype = resolve_compute_dtype(cfg.compute_dtype, device)
    source_sha256 = None
    quantize = cfg.finetune.method == "qlora"
    if quantize and not four_bit_available(device):
        log.warning("bitsandbytes 4-bit is unavailable on %s; falling back to LoRA over an unquantized base", device)
        quantize = False
    # Full fine-tuning keeps float32 master weights; mixed precision is the trainer's business.
    load_dtype = torch.float32 if cfg.finetune.method == "full" else dtype

    if cfg.source == EMBEDDED and weights_dir is None:
        tokenizer = build_tokenizer(cfg.max_positions)
        model: PreTrainedModel = LlamaForCausalLM(embedded_config(cfg, len(tokenizer)))
        if quantize:
            # Through a folder, so that quantization is transformers' own loading path.
            keep = _keep_and_report(model)
            with tempfile.TemporaryDirectory(prefix="medmm-backbone-") as tmp:
                model.save_pretrained(tmp)
                model = _load_pretrained(tmp, cfg, keep=keep, dtype=load_dtype, device=device)
        else:
            model = model.to(device=device, dtype=load_dtype)
    else:
        if weights_dir is not None and not Path(weights_dir).is_dir():
            raise CheckpointError("expected a folder holding the trained LM's weights", path=weights_dir)
        location = str(weights_dir) if weights_dir is not None else cfg.source
        if weights_dir is None and is_gguf_source(cfg.source):
            gguf = resolve_gguf(cfg.source)
            location, source_sha256 = str(gguf.folder), gguf.sha256
        config = _read_config(location, cfg)
        if cfg.source == EMBEDDED:
            _check_embedded(config, cfg, location)
        if cfg.finetune.adapters and cfg.finetune.target_modules is None:
            default_target_modules(config.model_type)  # fail before loading any weights
        tokenizer = _load_tokenizer(location, cfg)
        keep = _layers_to_keep(config, cfg) if quantize else None  # checked before any weight loads
        model = _load_pretrained(location, cfg, keep=keep, dtype=load_dtype, device=device)

    if quantize:
        use_cpu_kernel(model)
    model_type = str(model.config.model_type)
    model = apply_finetune(model, cfg.finetune, quantized=quantize)
    return Backbone(
        model=model, tokenizer=tokenizer, model_type=model_type, quantized=quantize, source_sha256=source_sha256
    )
