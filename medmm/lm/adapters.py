"""Fine-tuning set-up for the LM backbone: frozen, full, LoRA, or QLoRA (LoRA over a 4-bit base).

`FinetuneConfig` says what trains and how (the backbone config holds one, `backbone.finetune`).

LoRA wraps only the LM's linear projections named by the target list (a per-architecture
default table, or the config's own list). Fusion layers live outside the LM's module tree and
heads are refused as targets, so neither is ever wrapped. After set-up the trainable
parameters are exactly `expected_trainable(...)`, which tests assert.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from medmm.errors import ConfigError

log = logging.getLogger(__name__)

ADAPTER_NAME = "default"  # peft's name for the single adapter medmm trains

_LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# LoRA targets per Hugging Face model_type: every linear projection of attention and MLP.
DEFAULT_TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_STYLE,
    "mistral": _LLAMA_STYLE,
    "qwen2": _LLAMA_STYLE,
    "qwen3": _LLAMA_STYLE,
    "gemma": _LLAMA_STYLE,
    "gemma2": _LLAMA_STYLE,
    "gpt2": ("c_attn", "c_proj", "c_fc"),  # transformers' Conv1D, weights stored (in, out)
    "phi": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
}


FINETUNE_METHODS = ("frozen", "full", "lora", "qlora")
QUANT_STORAGE = ("uint8", "float32", "bfloat16", "float16")
# the settings below lived directly on the backbone config before they were grouped here
FLAT_KEYS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "quant_type",
    "double_quant",
    "quant_storage",
    "upcast_non_quantized",
    "gradient_checkpointing",
)


@dataclass(frozen=True)
class FinetuneConfig:
    """What trains in the LM and how: the method, its LoRA adapters and, under QLoRA, the 4-bit base."""

    method: str = "frozen"
    """"frozen" (nothing trains), "full" (all weights), "lora" (adapters over a full-precision base)
    or "qlora" (adapters over a 4-bit base)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scale numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] | None = None
    """Names of the linear projections that get LoRA adapters; None uses the per-architecture default."""
    quant_type: str = "nf4"
    """4-bit data type for QLoRA base weights: "nf4" or "fp4"."""
    double_quant: bool = True
    """Quantize the per-block scales too (QLoRA's double quantization)."""
    quant_storage: str = "uint8"
    """Dtype the packed 4-bit weights are stored in: "uint8", or the compute dtype ("bfloat16") so that
    FSDP can shard them with the 16-bit parameters (training/configs/accelerate/fsdp_qlora.yaml)."""
    upcast_non_quantized: bool = True
    """QLoRA: keep peft's cast of 16-bit norms, embeddings and head to float32 (stabler, more memory)."""
    gradient_checkpointing: bool = False
    """Recompute decoder activations in the backward pass (less memory, slower)."""

    def __post_init__(self) -> None:
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))  # YAML gives lists

        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"expected {expected}, got {getattr(self, name)!r}", where=f"backbone.finetune.{name}")

        if self.method not in FINETUNE_METHODS:
            raise bad("method", " | ".join(FINETUNE_METHODS))
        for name in ("lora_r", "lora_alpha"):
            if (
                isinstance(getattr(self, name), bool)
                or not isinstance(getattr(self, name), int)
                or getattr(self, name) < 1
            ):
                raise bad(name, "a positive integer")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise bad("lora_dropout", "a probability in [0, 1)")
        if self.target_modules is not None and (
            not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            raise bad("target_modules", "None or a non-empty list of module names")
        if self.quant_type not in ("nf4", "fp4"):
            raise bad("quant_type", "nf4 | fp4")
        if self.quant_storage not in QUANT_STORAGE:
            raise bad("quant_storage", " | ".join(QUANT_STORAGE))

    @property
    def adapters(self) -> bool:
        """Whether the method trains LoRA adapters (lora, qlora)."""
        return self.method in ("lora", "qlora")


def nest_finetune(data: Mapping[str, Any]) -> dict[str, Any]:
    """A backbone mapping with its fine-tuning settings under "finetune", as `FinetuneConfig` reads them.

    Configs and checkpoints written before the settings were grouped name the method as
    `finetune: qlora` and the rest (`lora_r`, `quant_type`, ...) beside it; those are moved into
    the group. A mapping already grouped is returned as it is."""
    out = dict(data)
    method = out.get("finetune")
    flat = {k: out.pop(k) for k in FLAT_KEYS if k in out}
    if isinstance(method, str) or flat:
        group = {"method": method} if isinstance(method, str) else dict(method or {})
        out["finetune"] = {**group, **flat}
    return out


def trainable_parameter_names(module: nn.Module) -> set[str]:
    """Names of the parameters of `module` that will receive gradients."""
    return {name for name, p in module.named_parameters() if p.requires_grad}


def _matches(module_name: str, targets: tuple[str, ...]) -> bool:
    """peft's rule for a list of targets: the full name, or its last dotted components."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


def default_target_modules(model_type: str) -> tuple[str, ...]:
    """The table's LoRA targets for a model_type; ConfigError naming it when there is none."""
    if model_type not in DEFAULT_TARGET_MODULES:
        known = ", ".join(sorted(DEFAULT_TARGET_MODULES))
        raise ConfigError(
            f"no default LoRA target modules for model_type '{model_type}' (defaults exist for "
            f"{known}); set backbone.finetune.target_modules to the names of its linear projections",
            where="backbone.finetune.target_modules",
        )
    return DEFAULT_TARGET_MODULES[model_type]


def _model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", "") or "unknown")


def resolve_target_modules(targets: tuple[str, ...] | None, model: PreTrainedModel) -> tuple[str, ...]:
    """The LoRA target names for `model`: the given ones, else the table's default for its model_type.

    Strict, since a silently unmatched target would train less than the config says: every
    target must match at least one linear layer, none may match anything else, and the LM
    head is never a target.
    """
    model_type = _model_type(model)
    if targets is None:
        targets = default_target_modules(model_type)
    targets = tuple(targets)
    head = model.get_output_embeddings()
    matched: set[str] = set()
    for name, module in model.named_modules():
        if not name or not _matches(name, targets):
            continue
        if module is head:
            raise ConfigError(
                f"LoRA target list matches the LM head '{name}' of model_type '{model_type}'; heads are never wrapped",
                where="backbone.finetune.target_modules",
            )
        if not isinstance(module, (nn.Linear, Conv1D)):
            raise ConfigError(
                f"LoRA target list matches '{name}' ({type(module).__name__}) in model_type "
                f"'{model_type}'; expected only linear projections",
                where="backbone.finetune.target_modules",
            )
        matched.update(t for t in targets if _matches(name, (t,)))
    missing = [t for t in targets if t not in matched]
    if missing:
        raise ConfigError(
            f"LoRA target modules {missing} match no layer of model_type '{model_type}'",
            where="backbone.finetune.target_modules",
        )
    return targets


@functools.lru_cache(maxsize=None)
def _four_bit_works(device: str) -> bool:
    """Quantize and run one tiny NF4 layer on `device` (bitsandbytes' kernels differ per backend)."""
    try:
        import bitsandbytes as bnb

        layer = bnb.nn.Linear4bit(
            64, 16, bias=False, compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4"
        )
        layer = layer.to(device)  # quantization happens on this move
        out = layer(torch.ones(2, 64, device=device))  # (2, 16)
        return bool(layer.weight.dtype == torch.uint8 and torch.isfinite(out).all())
    except Exception as exc:  # any failure means "not on this device"; the caller falls back
        log.debug("bitsandbytes 4-bit check failed on %s: %s", device, type(exc).__name__)
        return False


def four_bit_available(device: str | torch.device) -> bool:
    """Whether bitsandbytes can quantize to 4 bits and run a forward pass on `device`."""
    return _four_bit_works(str(torch.device(device)))


def _enable_checkpointing(model: PreTrainedModel) -> None:
    """Recompute decoder activations in backward; non-reentrant, so inputs need no grad hook."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # the newer transformers name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False  # a KV cache is useless with recomputation


def _prepare_quantized(model: PreTrainedModel, cfg: FinetuneConfig) -> PreTrainedModel:
    """peft's k-bit preparation, with its side effects made explicit by the config.

    It freezes everything and casts 16-bit non-quantized weights (norms, embeddings, head)
    to float32; `upcast_non_quantized=False` casts them back. Its gradient checkpointing is
    left off here: `apply_finetune` enables it only when the config asks.
    """
    before = {name: p.dtype for name, p in model.named_parameters()}
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if not cfg.upcast_non_quantized:
        for name, p in model.named_parameters():
            if p.dtype != before[name] and type(p).__name__ != "Params4bit":
                p.data = p.data.to(before[name])
    return model


def apply_finetune(model: PreTrainedModel, cfg: FinetuneConfig, *, quantized: bool) -> nn.Module:
    """Set requires_grad (frozen/full) or wrap in LoRA adapters (lora/qlora); return the model to train.

    Gradient checkpointing applies in every mode, frozen included: fusion layers hooked into a
    frozen LM still send gradients back through its decoder layers.
    """
    if cfg.gradient_checkpointing:
        _enable_checkpointing(model)
    if cfg.method == "frozen":
        return model.requires_grad_(False)
    if cfg.method == "full":
        return model.requires_grad_(True)
    targets = resolve_target_modules(cfg.target_modules, model)
    if quantized:
        model = _prepare_quantized(model, cfg)
    else:
        model.requires_grad_(False)
    # transformers' Conv1D (GPT-2) stores weights as (in, out); peft must know to transpose.
    conv1d = any(isinstance(m, Conv1D) for n, m in model.named_modules() if n and _matches(n, targets))
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(targets),
        bias="none",
        fan_in_fan_out=conv1d,
    )
    with warnings.catch_warnings():
        # peft probes a transformers property that is deprecated in favour of a new name; harmless.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora, adapter_name=ADAPTER_NAME)


def expected_trainable(cfg: FinetuneConfig, model: nn.Module) -> set[str]:
    """The parameter names that must be trainable in `model` after set-up under `cfg`.

    frozen: none; full: every LM parameter; lora/qlora: exactly the lora_A/lora_B weights of
    the targeted projections (no base weight, no embedding, no head).
    """
    if cfg.method == "frozen":
        return set()
    if cfg.method == "full":
        return {name for name, _ in model.named_parameters()}
    if not isinstance(model, PeftModel):
        raise ConfigError(
            f"finetune method '{cfg.method}' expects a LoRA-wrapped model, got {type(model).__name__}",
            where="backbone.finetune.method",
        )
    base = model.get_base_model()
    targets = tuple(cfg.target_modules or default_target_modules(_model_type(base)))
    # peft's LoRA layer keeps the target's name; the original layer moves to "<name>.base_layer".
    wrapped = [name for name, _ in model.named_modules() if name and _matches(name, targets)]
    return {f"{name}.{part}.{ADAPTER_NAME}.weight" for name in wrapped for part in ("lora_A", "lora_B")}
