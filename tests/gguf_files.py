"""Write small GGUF files for tests: a tiny random Llama and a byte-level BPE tokenizer, with the `gguf` package.

The layout is llama.cpp's: tensor names `token_embd`, `blk.N.attn_q` ..., `output_norm`,
`output`; the query and key projections permuted the way llama.cpp's converter permutes them
(heads interleaved for its rotary embedding), which a reader must undo; weights quantized with
`gguf.quants` (Q8_0 by default), norms kept in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "Impression: pneumonia (right lower lobe consolidation; fever), pleural effusion.",
    "Question: what is the heart rate? Answer: 112 beats per minute.",
    "the patient has a cough and shortness of breath; no acute cardiopulmonary diagnosis.",
]


def bpe_tokenizer(vocab_size: int = 320) -> Tokenizer:
    """A byte-level BPE trained on a few sentences (GPT-2's scheme, as SmolLM2 uses)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return tok


def tiny_llama(vocab_size: int, *, seed: int = 0, tie: bool = False) -> LlamaForCausalLM:
    """Widths every quantization block size divides (rows of 64 and 128 values)."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:  # norms: not all ones, so that a misplaced norm shows
                p.uniform_(0.5, 1.5)
    return model


def permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation of a query or key projection (out, in) with `heads` heads."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def gguf_tensors(model: LlamaForCausalLM) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's names (float32, query and key permuted)."""
    cfg = model.config
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if not cfg.tie_word_embeddings:
        out["output.weight"] = state["lm_head.weight"]
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            w = state[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                w = permute(w, cfg.num_attention_heads)
            elif gg == "attn_k":
                w = permute(w, cfg.num_key_value_heads)
            out[f"blk.{i}.{gg}.weight"] = w
    return out


def write_gguf(
    path: Path,
    model: LlamaForCausalLM,
    tok: Tokenizer,
    *,
    qtype_name: str = "Q8_0",
    chat_template: str | None = CHAT_TEMPLATE,
) -> dict[str, np.ndarray]:
    """Write `model` and `tok` as a GGUF file; returns each tensor as a reader should see it (dequantized)."""
    import gguf

    cfg = model.config
    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert len(tokens) == cfg.vocab_size and [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|endoftext|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    seen = {}
    for name, w in gguf_tensors(model).items():
        if w.ndim == 1:
            writer.add_tensor(name, w.astype(np.float32))
            seen[name] = w.astype(np.float32)
        else:
            q = gguf.quants.quantize(w.astype(np.float32), qtype)
            writer.add_tensor(name, q, raw_dtype=qtype)
            seen[name] = gguf.quants.dequantize(q, qtype).reshape(w.shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return seen


def dequantized_reference(model: LlamaForCausalLM, seen: dict[str, np.ndarray]) -> LlamaForCausalLM:
    """A copy of `model` whose weights are those the GGUF file holds (quantized and back, query and key
    unpermuted by inverting `permute` here): what a correct reader must rebuild."""
    cfg = model.config
    ref = LlamaForCausalLM(cfg).eval()
    inverse = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    state = {
        "model.embed_tokens.weight": seen["token_embd.weight"],
        "model.norm.weight": seen["output_norm.weight"],
        "lm_head.weight": seen.get("output.weight", seen["token_embd.weight"]),
    }
    for name, w in seen.items():
        if not name.startswith("blk."):
            continue
        _, layer, gg, _ = name.split(".")
        if gg in ("attn_q", "attn_k"):
            heads = cfg.num_attention_heads if gg == "attn_q" else cfg.num_key_value_heads
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        state[f"model.layers.{layer}.{inverse[gg]}.weight"] = w
    ref.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in state.items()}, strict=True)
    return ref


def fast_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
