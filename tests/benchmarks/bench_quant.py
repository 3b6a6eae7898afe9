"""Memory of a QLoRA backbone: bytes of 4-bit NF4 (double-quantized) linear layers vs bf16.

Builds a random Llama of at least 100M parameters, saves it, loads it back through medmm's
QLoRA path (`load_backbone` with finetune="qlora") and prints, side by side:

- the quantized linear layers: packed 4-bit weights plus their quantization state (8-bit
  block scales, the float32 scales of those scales, code tables, offset) vs the same layers
  in bf16. Four bits against sixteen is 0.25; the block scales add about 1/128 on top, so
  the format's floor is about 0.26x;
- the whole model, where embeddings, norms and the LM head stay 16-bit, so the ratio
  depends on vocabulary size.

Run: python benchmarks/bench_quant.py [--hidden 768 --layers 12 --vocab 32000 --device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import bitsandbytes as bnb
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from medmm.lm.adapters import FinetuneConfig
from medmm.lm.backbone import BackboneConfig, load_backbone
from medmm.lm.tokenizer import build_tokenizer


def tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def quant_state_bytes(qs) -> int:
    """Everything a 4-bit layer stores besides its packed weights."""
    total = tensor_bytes(qs.absmax) + tensor_bytes(qs.code) + tensor_bytes(qs.offset)
    if qs.nested:
        total += tensor_bytes(qs.state2.absmax) + tensor_bytes(qs.state2.code)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    linear_bf16 = {
        name: tensor_bytes(m.weight)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m is not model.get_output_embeddings()
    }
    whole_bf16 = sum(tensor_bytes(p) for p in model.parameters())
    print(
        f"random Llama: {n_params / 1e6:.1f}M parameters "
        f"(hidden {args.hidden}, {args.layers} layers, vocab {args.vocab})"
    )

    with tempfile.TemporaryDirectory(prefix="bench-quant-") as folder:
        model.save_pretrained(folder)
        build_tokenizer().save_pretrained(folder)
        del model
        t1 = time.perf_counter()
        cfg = BackboneConfig(
            source=folder,
            compute_dtype="bfloat16",
            finetune=FinetuneConfig(method="qlora", upcast_non_quantized=False, lora_r=8),
        )
        bb = load_backbone(cfg, device=args.device)
        t2 = time.perf_counter()
    if not bb.quantized:
        raise SystemExit(f"bitsandbytes 4-bit is not available on {args.device}")

    linear_4bit = 0
    weights_4bit = 0
    quantized_names = set()
    for name, m in bb.base.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            assert qs.quant_type == "nf4" and qs.nested, "expected NF4 with double quantization"
            weights_4bit += tensor_bytes(m.weight)
            linear_4bit += tensor_bytes(m.weight) + quant_state_bytes(qs)
            quantized_names.add(name.removesuffix(".base_layer"))
    assert quantized_names == set(linear_bf16), "every decoder projection should be 4-bit"
    others = sum(
        tensor_bytes(p)
        for name, p in bb.base.named_parameters()
        if "lora_" not in name and not isinstance(p, bnb.nn.Params4bit)
    )
    whole_4bit = linear_4bit + others
    linear_16 = sum(linear_bf16.values())

    def row(label: str, bf16: int | None, quant: int) -> str:
        left = f"{bf16 / 2**20:10.1f}" if bf16 else " " * 10
        return f"{label:34}{left}{quant / 2**20:12.1f}{quant / (bf16 or linear_16):8.3f}"

    print(f"build {t1 - t0:.1f} s, save + quantizing load {t2 - t1:.1f} s on {args.device}")
    print(f"{'':34}{'bf16 MiB':>10}{'NF4+DQ MiB':>12}{'ratio':>8}")
    print(row("quantized linear layers", linear_16, linear_4bit))
    print(row("  of which packed 4-bit weights", None, weights_4bit))
    print(row("whole model (embeddings 16-bit)", whole_bf16, whole_4bit))
    verdict = "meets" if linear_4bit / linear_16 <= 0.27 else "MISSES"
    print(f"linear-layer ratio {linear_4bit / linear_16:.4f} {verdict} the 0.27x target (format floor about 0.26x)")


if __name__ == "__main__":
    main()
