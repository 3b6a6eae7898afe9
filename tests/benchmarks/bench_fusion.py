"""Cost of gated cross-attention fusion during generation, with and without the key/value cache.

Builds a random Llama, attaches fusion blocks every `--every-n` layers, and times greedy
generation of `--new-tokens` tokens for one batch of cases, side by side:

- the base LM (no context);
- fused, keys/values of the context recomputed on every forward pass;
- fused, keys/values computed once per case and reused (MultimodalContext(cache_kv=True)).

It also counts the cross-attention key/value projections each run performs, which is what the
cache saves: one per block per case instead of one per block per generated token.

Run: python benchmarks/bench_fusion.py [--hidden 512 --layers 8 --latents 192 --new-tokens 32 --device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from medmm.fusion import CrossAttentionFusion, FusionConfig, MultimodalContext


def timed_generate(lm, prompt, new_tokens: int, repeats: int) -> tuple[float, torch.Tensor]:
    """Best wall time of `repeats` greedy generations, and the generated ids."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = lm.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        if prompt.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--every-n", type=int, default=2)
    parser.add_argument("--latents", type=int, default=192, help="context latents per case (all modalities)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    lm = LlamaForCausalLM(config).to(args.device).eval()
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=args.every_n, heads=args.heads)).to(args.device)
    fusion.attach(lm)
    with torch.no_grad():
        for block in fusion.blocks:  # open the gates so the blocks do real work
            block.attn_gate.fill_(0.5)
            block.ff_gate.fill_(0.5)
    projections = []
    for block in fusion.blocks:
        block.attn.to_kv.register_forward_hook(lambda mod, inp, out: projections.append(1))

    prompt = torch.randint(3, args.vocab, (args.batch, args.prompt), device=args.device)
    latents = torch.randn(args.batch, args.latents, args.hidden, device=args.device)
    mask = torch.ones(args.batch, args.latents, dtype=torch.bool, device=args.device)

    base_s, _ = timed_generate(lm, prompt, args.new_tokens, args.repeats)
    results = []
    for label, cache in (("fused, recomputed k/v", False), ("fused, cached k/v", True)):
        # A fresh context per generate call: the cache belongs to one case, never reused across calls.
        seconds, out = float("inf"), None
        for _ in range(args.repeats):
            projections.clear()
            with fusion.use_context(MultimodalContext(latents, mask, cache_kv=cache)):
                s, out = timed_generate(lm, prompt, args.new_tokens, 1)
            seconds = min(seconds, s)
        results.append((label, seconds, len(projections), out))

    print(
        f"device={args.device} hidden={args.hidden} layers={args.layers} blocks={len(fusion.blocks)} "
        f"latents={args.latents} batch={args.batch} prompt={args.prompt} new_tokens={args.new_tokens}"
    )
    print(f"{'run':<24}{'seconds':>10}{'ms/token':>10}{'x base':>8}{'k/v proj':>10}")
    print(f"{'base LM':<24}{base_s:>10.3f}{1000 * base_s / args.new_tokens:>10.2f}{1.0:>8.2f}{0:>10}")
    for label, seconds, count, _ in results:
        print(
            f"{label:<24}{seconds:>10.3f}{1000 * seconds / args.new_tokens:>10.2f}{seconds / base_s:>8.2f}{count:>10}"
        )
    same = torch.equal(results[0][3], results[1][3])
    print(f"cached vs recomputed: {results[0][1] / results[1][1]:.2f}x faster; identical tokens: {same}")


if __name__ == "__main__":
    main()
