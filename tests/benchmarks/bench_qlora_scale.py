"""QLoRA at real scale: medmm's fused model on 1B-8B decoders (random weights), beside a 16-bit LoRA.

    python tests/benchmarks/bench_qlora_scale.py [--shapes llama3-1b,qwen2.5-1.5b,llama3-3b,qwen2.5-3b,llama3-8b,qwen2.5-7b]
        [--batch 4] [--seq 512] [--steps 4] [--device cuda] [--no-lora16]

For each decoder shape (Llama-3 and Qwen2.5 sizes), the LM is built with random weights directly
in its training form, without a checkpoint on disk: QLoRA (every decoder projection a
bitsandbytes NF4 layer with double quantization, bf16 compute; embeddings, norms and head bf16;
LoRA r=16 on q, k, v, o, gate, up, down through medmm's own `apply_finetune`) and, unless
--no-lora16, the same LoRA over a bf16 base. medmm's encoders, resamplers, gated cross-attention
blocks (every 4th decoder layer) and diagnosis head are attached as `build_model` attaches them.
Each run does --steps optimizer steps (paged 8-bit AdamW on CUDA; AdamW on the CPU) with
gradient checkpointing, on a random batch of every modality and --seq tokens of LM target, and
prints, side by side: parameters, trainable parameters, weight memory, peak GPU memory of a
training step (torch.cuda.max_memory_allocated, after the first step), tokens/s (LM tokens of the
timed steps over their wall time), and the ratio of the QLoRA peak to the 16-bit LoRA peak. A
shape that does not fit prints "out of memory" and the run goes on.

`--shapes tiny --device cpu` runs the same code on a 2-layer model on the CPU (a smoke run; its
figures mean nothing).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
import torch.nn.functional as F
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from medmm.fusion.layers import FusionConfig
from medmm.lm.adapters import FinetuneConfig, apply_finetune
from medmm.lm.backbone import Backbone, BackboneConfig
from medmm.lm.tokenizer import build_tokenizer
from medmm.model import MedMM, ModelConfig

SHAPES = {  # the published shapes of each family (hidden, layers, heads, kv heads, MLP, vocabulary, tied)
    "llama3-1b": ("llama", 2048, 16, 32, 8, 8192, 128256, True),
    "llama3-3b": ("llama", 3072, 28, 24, 8, 8192, 128256, True),
    "llama3-8b": ("llama", 4096, 32, 32, 8, 14336, 128256, False),
    "qwen2.5-1.5b": ("qwen2", 1536, 28, 12, 2, 8960, 151936, True),
    "qwen2.5-3b": ("qwen2", 2048, 36, 16, 2, 11008, 151936, True),
    "qwen2.5-7b": ("qwen2", 3584, 28, 28, 4, 18944, 152064, False),
    "tiny": ("llama", 128, 2, 4, 2, 256, 2560, True),
}
DEFAULT_SHAPES = "llama3-1b,qwen2.5-1.5b,llama3-3b,qwen2.5-3b,llama3-8b,qwen2.5-7b"


def decoder_config(name: str):
    kind, hidden, layers, heads, kv, mlp, vocab, tied = SHAPES[name]
    common = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=mlp,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=4096,
        use_cache=False,
    )
    return (
        LlamaConfig(**common, rope_theta=500000.0) if kind == "llama" else Qwen2Config(**common, rope_theta=1000000.0)
    )


def random_lm(config, *, four_bit: bool, device: torch.device) -> nn.Module:
    """The decoder with random weights, built layer by layer on `device` (never whole in 16 bits when 4-bit)."""
    import bitsandbytes as bnb

    with init_empty_weights(include_buffers=False):  # parameters on the meta device, buffers (rotary) real
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    head = model.get_output_embeddings()
    for module_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear) or child is head:
                continue
            weight = torch.randn(child.out_features, child.in_features, device=device, dtype=torch.bfloat16) * 0.02
            if four_bit:
                layer = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.bfloat16,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                layer.weight = bnb.nn.Params4bit(
                    weight, requires_grad=False, compress_statistics=True, quant_type="nf4"
                ).to(device)  # quantized on this move
            else:
                layer = nn.Linear(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    device="meta",
                    dtype=torch.bfloat16,
                )
                layer.weight = nn.Parameter(weight, requires_grad=False)
            if child.bias is not None:
                layer.bias = nn.Parameter(torch.zeros(child.out_features, device=device, dtype=torch.bfloat16))
            setattr(module, child_name, layer)
            del weight
    for module in model.modules():  # what is left on meta: embeddings, norms, an untied head
        for pname, param in list(module.named_parameters(recurse=False)):
            if param.device.type == "meta":
                real = (
                    torch.ones(param.shape, dtype=torch.bfloat16, device=device)
                    if param.dim() == 1
                    else torch.randn(param.shape, dtype=torch.bfloat16, device=device) * 0.02
                )
                setattr(module, pname, nn.Parameter(real, requires_grad=False))
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.to(device)


def fused_model(lm: nn.Module, *, quantized: bool, device: torch.device) -> MedMM:
    """medmm's model around the decoder: LoRA via apply_finetune, fusion every 4th layer, gradient checkpointing."""
    cfg = BackboneConfig(
        source="benchmark",
        compute_dtype="bfloat16",
        finetune=FinetuneConfig(
            method="qlora" if quantized else "lora",
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            upcast_non_quantized=False,
            gradient_checkpointing=True,
        ),
    )
    backbone = Backbone(
        model=apply_finetune(lm, cfg.finetune, quantized=quantized),
        tokenizer=build_tokenizer(),
        model_type=lm.config.model_type,
        quantized=quantized,
    )
    every = 4 if lm.config.num_hidden_layers >= 8 else 1
    config = ModelConfig(backbone=cfg, fusion=FusionConfig(every_n=every, heads=8), unimodal_heads=True)
    model = MedMM(config, backbone)
    for name, module in model.named_children():
        if name != "lm":
            module.to(device)  # float32 (small beside the LM); autocast runs their matmuls in bf16
    return model


def random_batch(model: MedMM, rows: int, seq: int, device: torch.device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    p, cfg = model.config.preprocess, model.config
    g = torch.Generator().manual_seed(0)
    vocab = len(model.tokenizer)
    notes_vocab = 30000
    batch = {
        "image": torch.rand(rows, 1, p.image_size, p.image_size, generator=g),
        "image_present": torch.ones(rows, dtype=torch.bool),
        "notes_ids": torch.randint(5, notes_vocab, (rows, p.max_notes, p.max_note_tokens), generator=g),
        "notes_attention": torch.ones(rows, p.max_notes, p.max_note_tokens, dtype=torch.long),
        "notes_present": torch.ones(rows, p.max_notes, dtype=torch.bool),
        "vitals": torch.randn(rows, p.vitals_steps, cfg.vitals.num_channels, generator=g),
        "vitals_observed": torch.ones(rows, p.vitals_steps, cfg.vitals.num_channels, dtype=torch.bool),
        "vitals_present": torch.ones(rows, dtype=torch.bool),
    }
    batch = {k: v.to(device) for k, v in batch.items()}
    ids = torch.randint(4, vocab, (rows, seq), generator=g).to(device)
    return batch, ids, ids.clone()


def run(name: str, *, four_bit: bool, args, device: torch.device) -> dict:
    import bitsandbytes as bnb

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    lm = random_lm(decoder_config(name), four_bit=four_bit, device=device)
    model = fused_model(lm, quantized=four_bit, device=device).train()
    weights = torch.cuda.memory_allocated() if cuda else 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()  # float32 master weights for what trains (adapters, fusion, encoders, heads)
    optimizer = bnb.optim.PagedAdamW8bit(trainable, lr=1e-4) if cuda else torch.optim.AdamW(trainable, lr=1e-4)
    batch, ids, labels = random_batch(model, args.batch, args.seq, device)
    attn = torch.ones_like(ids)
    pool = torch.full((args.batch,), args.seq - 1, device=device)
    times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model(batch, ids, attn, pool, lm_labels=labels)
            loss = (
                F.binary_cross_entropy_with_logits(
                    out.diagnosis_logits.float(), torch.zeros_like(out.diagnosis_logits.float())
                )
                + out.lm_loss
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step == 0 and cuda:
            torch.cuda.reset_peak_memory_stats()  # the first step allocates optimizer state; steady state after
        elif step:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    result = {
        "params": sum(p.numel() * (2 if isinstance(p, bnb.nn.Params4bit) else 1) for p in model.lm.parameters()),
        "trainable": sum(p.numel() for p in trainable),
        "weights_gib": weights / 2**30,
        "peak_gib": max(peak, weights) / 2**30,
        "tokens_s": args.batch * args.seq * len(times) / sum(times),
        "loss": loss.item(),
    }
    del model, lm, optimizer, batch, out, loss
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512, help="LM tokens per row")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps (after one untimed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-lora16", action="store_true", help="skip the 16-bit LoRA comparison")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(
            f"device: {torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
        )
    print(f"batch {args.batch} x {args.seq} tokens, {args.steps} timed steps, gradient checkpointing, bf16 compute")
    print(
        f"{'shape':<13} {'mode':<7} {'params (B)':>10} {'trainable (M)':>13} {'weights GiB':>11} {'peak GiB':>9} {'tokens/s':>9}"
    )
    for name in args.shapes.split(","):
        peaks = {}
        for mode in ("qlora", "lora16") if not args.no_lora16 else ("qlora",):
            try:
                r = run(name, four_bit=mode == "qlora", args=args, device=device)
            except torch.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
                print(f"{name:<13} {mode:<7} out of memory")
                continue
            peaks[mode] = r["peak_gib"]
            print(
                f"{name:<13} {mode:<7} {r['params'] / 1e9:>10.2f} {r['trainable'] / 1e6:>13.1f} {r['weights_gib']:>11.2f} "
                f"{r['peak_gib']:>9.2f} {r['tokens_s']:>9.0f}",
                flush=True,
            )
        if len(peaks) == 2 and peaks["lora16"] > 0:
            print(f"{name:<13} QLoRA peak / 16-bit LoRA peak: {peaks['qlora'] / peaks['lora16']:.2f}")


if __name__ == "__main__":
    main()
