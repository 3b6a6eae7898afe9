"""Model benchmark: parameters by part, one-case forward time, and cached against recomputed generation.

Run with the project's Python from the repository root::

    python tests/benchmarks/bench_model.py [--tokens 64] [--latents 72] [--repeats 3] [--threads 2]

It builds the embedded default model (default ModelConfig, notes encoder = the offline
all-MiniLM-L6-v2) with `--latents` latents per modality, then times greedy generation of exactly
`--tokens` new tokens two ways: MedMM.generate_ids with reuse_context=True (encoders and
cross-attention keys/values once per case, the LM's own key/value cache) and with
reuse_context=False (encoders, keys/values and the whole sequence recomputed at every step).
Both must give the same tokens; the ratio of their times is the speed-up of reusing the context.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

from medmm.codes import VITAL_NAMES
from medmm.lm.prompts import IMPRESSION_PROMPT
from medmm.model import MedMM, ModelConfig, ResamplerConfig, build_model


def case_batch(config: ModelConfig, seed: int = 0) -> dict:
    """One case with every modality present at full size: a radiograph, full-length notes, a dense vitals grid."""
    g = torch.Generator().manual_seed(seed)
    p = config.preprocess
    steps = p.vitals_steps
    return {
        "image": torch.rand(1, 1, p.image_size, p.image_size, generator=g),
        "image_present": torch.ones(1, dtype=torch.bool),
        "notes_ids": torch.randint(1000, 20000, (1, p.max_notes, p.max_note_tokens), generator=g),
        "notes_attention": torch.ones(1, p.max_notes, p.max_note_tokens, dtype=torch.long),
        "notes_present": torch.ones(1, p.max_notes, dtype=torch.bool),
        "vitals": torch.randn(1, steps, len(VITAL_NAMES), generator=g),
        "vitals_observed": torch.rand(1, steps, len(VITAL_NAMES), generator=g) > 0.2,
        "vitals_present": torch.ones(1, dtype=torch.bool),
    }


def count(module: torch.nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def parameter_table(model: MedMM) -> list[tuple[str, int, int]]:
    rows = [(f"encoder: {name}", *count(enc)) for name, enc in model.encoders.items()]
    rows += [(f"resampler: {name}", *count(r)) for name, r in model.resamplers.items()]
    rows += [
        ("fusion (gated cross-attention)", *count(model.fusion)),
        ("diagnosis head", *count(model.head)),
        ("language model", *count(model.lm)),
    ]
    return rows


def timed(fn, repeats: int, *, warm_up: bool = True) -> tuple[float, object]:
    """Median wall time of `repeats` calls (after one untimed warm-up call, if asked) and the last result."""
    result = fn() if warm_up else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="new tokens to generate (EOS suppressed until then)")
    parser.add_argument("--latents", type=int, default=72, help="resampler latents per modality")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = dataclasses.replace(
        ModelConfig(), resampler=dataclasses.replace(ResamplerConfig(), num_latents=args.latents)
    )
    start = time.perf_counter()
    model = build_model(config).eval()
    build_seconds = time.perf_counter() - start
    with torch.no_grad():
        for block in model.fusion.blocks:  # as after training: the context does reach the LM
            block.attn_gate.fill_(0.1)
            block.ff_gate.fill_(0.1)
    batch = case_batch(config)
    latents = args.latents * len(model.encoders)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"model built in {build_seconds:.1f} s; {latents} multimodal latents ({args.latents} x {len(model.encoders)} modalities)"
    )
    print(f"\n{'part':34s} {'parameters':>12s} {'trainable':>12s}")
    table = parameter_table(model)
    for name, total, trainable in table:
        print(f"{name:34s} {total:12,d} {trainable:12,d}")
    print(f"{'total':34s} {sum(r[1] for r in table):12,d} {sum(r[2] for r in table):12,d}")

    ids, attn = model.prompt_ids([IMPRESSION_PROMPT], "cpu")
    pool = torch.tensor([ids.shape[1] - 1])

    def forward():
        with torch.no_grad():
            return model(batch, ids, attn, pool).diagnosis_logits

    def encode():
        with torch.no_grad():
            return model.encode(batch)

    forward_s, _ = timed(forward, args.repeats)
    encode_s, _ = timed(encode, args.repeats)
    print(
        f"\none-case forward (encode + LM + head): {forward_s * 1000:.1f} ms, of which encoders + resamplers {encode_s * 1000:.1f} ms"
    )

    settings = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    cached_s, cached = timed(
        lambda: model.generate_ids(batch, [IMPRESSION_PROMPT], reuse_context=True, **settings), args.repeats
    )
    reference_s, reference = timed(  # already warm from the cached runs; one 64-step run is long enough
        lambda: model.generate_ids(batch, [IMPRESSION_PROMPT], reuse_context=False, **settings),
        max(1, args.repeats - 2),
        warm_up=False,
    )
    same = torch.equal(cached, reference)
    print(f"\ngreedy generation of {cached.shape[1]} tokens, one case:")
    print(
        f"  reuse context (cached encoders and keys/values): {cached_s:8.2f} s  ({cached_s / args.tokens * 1000:.1f} ms/token)"
    )
    print(
        f"  recompute everything at every step:              {reference_s:8.2f} s  ({reference_s / args.tokens * 1000:.1f} ms/token)"
    )
    print(f"  speed-up: {reference_s / cached_s:.1f}x   identical tokens: {same}")
    if not same:
        raise SystemExit("cached and recomputed generation differ")


if __name__ == "__main__":
    main()
