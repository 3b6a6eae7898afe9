"""4-bit base weights (bitsandbytes NF4/FP4) that behave the same on every machine.

bitsandbytes runs a 4-bit layer on one of three paths: CUDA, the plain CPU path (dequantize,
then a float matmul) and, on CPUs with AVX-512 BF16, a fused bf16 kernel. The fused path
repacks a layer's weight in place the first time the layer runs in eval mode without
gradients (output features in blocks of 32, per-block scales as bf16) and leaves it packed:
training or gradients through the layer afterwards then fail or lose the gradient, and its own
way back to the stored layout re-quantizes the scales, so the frozen base drifts.

medmm keeps one canonical layout (the one quantization gives) wherever a weight is read,
trained or saved:
- which layers are quantized depends on their shapes alone, checked before loading, so a
  model is the same on every machine; a layer whose shape a kernel cannot take keeps its
  16/32-bit weights, named in one log line;
- the CPU kernel is chosen per process (`MEDMM_CPU_4BIT_KERNEL`): "plain" by default, which
  gives the same numbers on every CPU, or "fused" where the CPU has AVX-512 BF16 (faster
  inference; bf16 products, so outputs differ from the plain path by bf16 rounding);
- under "fused", a packed layer is put back exactly as it was quantized before it trains,
  passes gradients or writes its state dict.
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn

from medmm.errors import ConfigError

log = logging.getLogger(__name__)

KERNEL_ENV = "MEDMM_CPU_4BIT_KERNEL"
CPU_KERNELS = ("plain", "fused")
PACK_BLOCK_OUT = 32  # the fused CPU kernel packs output features in blocks of 32
QUANT_BLOCK = 64  # bitsandbytes' 4-bit block: one absmax scale per 64 weights
_CANONICAL = "_medmm_canonical_state"  # quant state kept while a layer runs packed


def fits_4bit(out_features: int, in_features: int) -> bool:
    """Whether every 4-bit kernel takes a (out_features, in_features) weight.

    The fused CPU kernel packs output features in blocks of 32 and keeps one scale per 64
    input features of each row; CUDA and the plain CPU path take any shape, so this is the rule.
    """
    return out_features % PACK_BLOCK_OUT == 0 and in_features % QUANT_BLOCK == 0


def layers_kept_unquantized(model: nn.Module) -> dict[str, tuple[int, int]]:
    """The linear layers of `model` that 4-bit loading must leave in 16/32 bits, with their shapes.

    The output embedding (LM head) always stays: transformers keeps it unquantized by default,
    and passing any skip list replaces that default, so it is listed here too.
    """
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layer, weight stored (in, out)

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    kept = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shape = (module.out_features, module.in_features)
        elif isinstance(module, Conv1D):
            shape = (module.nf, module.weight.shape[0])
        else:
            continue
        if module is head or not fits_4bit(*shape):
            kept[name] = shape
    return kept


def report_unfit(kept: dict[str, tuple[int, int]], head_names: set[str]) -> None:
    """One log line naming the layers that stay in 16/32 bits for their shape (the head is not news)."""
    unfit = {n: s for n, s in kept.items() if n not in head_names}
    if unfit:
        listed = ", ".join(f"{n} ({o}x{i})" for n, (o, i) in sorted(unfit.items()))
        log.warning(
            "4-bit: %d linear layer(s) keep 16/32-bit weights because a 4-bit kernel cannot take their "
            "shape (output features must be a multiple of %d, input features of %d): %s",
            len(unfit),
            PACK_BLOCK_OUT,
            QUANT_BLOCK,
            listed,
        )


def requested_cpu_kernel() -> str:
    """The CPU kernel this process is asked to use: $MEDMM_CPU_4BIT_KERNEL, "plain" when unset."""
    value = os.environ.get(KERNEL_ENV, "plain").strip().lower() or "plain"
    if value not in CPU_KERNELS:
        raise ConfigError(f"expected {' | '.join(CPU_KERNELS)}, got {value!r}", where=KERNEL_ENV)
    return value


def fused_kernel_available() -> bool:
    """Whether bitsandbytes has its fused bf16 CPU kernel here (the CPU reports AVX-512 BF16)."""
    try:
        from bitsandbytes.functional import has_avx512bf16

        return bool(has_avx512bf16())
    except (ImportError, AttributeError, OSError, RuntimeError):
        return False


def kernel_in_effect() -> str:
    """The CPU kernel 4-bit layers loaded now will run: the requested one, if this CPU has it."""
    kernel = requested_cpu_kernel()
    return kernel if kernel == "plain" or fused_kernel_available() else "plain"


def _four_bit_layers(model: nn.Module) -> list[nn.Module]:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def _is_packed(module: nn.Module) -> bool:
    return bool(getattr(module.weight.quant_state, "packing_format_for_cpu", False))


def restore_canonical(module: nn.Module) -> None:
    """Put a packed 4-bit layer back in the layout quantization gave it, bit for bit.

    The packing only permutes the 4-bit codes, which bitsandbytes' inverse undoes exactly; the
    scales come from the quant state kept when packing began (bitsandbytes' own inverse would
    re-quantize them from bf16). A layer packed outside medmm's hook gets bitsandbytes' inverse.
    """
    if not _is_packed(module):
        return
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    packed_state = module.weight.quant_state
    canonical = module.__dict__.pop(_CANONICAL, None)
    qweight, recovered = _convert_weight_packed_for_cpu_inverse(module.weight.data, copy.copy(packed_state))
    state = canonical if canonical is not None else recovered
    module.weight.data = qweight
    module.weight.quant_state = state
    if getattr(module, "quant_state", None) is not None:
        module.quant_state = state


def _before_forward(module: nn.Module, args: tuple) -> None:
    """Restore the canonical layout before the layer trains or passes gradients; remember it before bitsandbytes packs."""
    x = args[0] if args else None
    wants_grad = module.training or (isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled())
    if _is_packed(module):
        if wants_grad:
            restore_canonical(module)
        return
    if not wants_grad and module.support_avx512bf16_for_cpu and isinstance(x, torch.Tensor) and x.device.type == "cpu":
        # bitsandbytes will pack in this call (same condition as its forward): keep the state it rewrites
        module.__dict__[_CANONICAL] = copy.copy(module.weight.quant_state)


def _before_state_dict(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    restore_canonical(module)


def use_cpu_kernel(model: nn.Module, kernel: str | None = None) -> str:
    """Set the CPU kernel of every 4-bit layer in `model`; return the kernel in effect.

    "fused" where the CPU lacks AVX-512 BF16 runs "plain" and says so once. Layers on CUDA
    ignore the setting.
    """
    layers = _four_bit_layers(model)
    kernel = kernel or requested_cpu_kernel()
    if kernel not in CPU_KERNELS:
        raise ConfigError(f"expected {' | '.join(CPU_KERNELS)}, got {kernel!r}", where=KERNEL_ENV)
    if kernel == "fused" and not fused_kernel_available():
        log.warning("4-bit: the fused CPU kernel needs AVX-512 BF16, which this CPU lacks; the plain kernel runs")
        kernel = "plain"
    for layer in layers:
        restore_canonical(layer)
        layer.support_avx512bf16_for_cpu = kernel == "fused"
        if kernel == "fused" and not getattr(layer, "_medmm_layout_hooks", False):
            layer.register_forward_pre_hook(_before_forward)
            layer.register_state_dict_pre_hook(_before_state_dict)
            layer._medmm_layout_hooks = True
    return kernel
