from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    FalconConfig,
    Gemma2Config,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    OPTConfig,
    Phi3Config,
    PhiConfig,
    Qwen2Config,
    Qwen3Config,
)

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.encoders.vitals import VitalsEncoder, VitalsEncoderConfig
from medmm.errors import ConfigError
from medmm.fusion.context import MultimodalContext
from medmm.fusion.layers import (
    DECODER_LAYER_PATHS,
    CrossAttentionFusion,
    FusionConfig,
    decoder_layers,
    hidden_size,
    model_type,
)
from medmm.fusion.resampler import PerceiverResampler

LAYERS, WIDTH, VOCAB = 4, 32, 64
IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
DECODER = dict(
    vocab_size=VOCAB,
    hidden_size=WIDTH,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    **IDS,
)
CONFIGS = {
    "llama": lambda: LlamaConfig(**DECODER),
    "mistral": lambda: MistralConfig(**DECODER),
    "mixtral": lambda: MixtralConfig(**DECODER, num_local_experts=2, num_experts_per_tok=1),
    "qwen2": lambda: Qwen2Config(**DECODER),
    "qwen3": lambda: Qwen3Config(**DECODER),
    "gemma": lambda: GemmaConfig(**DECODER),
    "gemma2": lambda: Gemma2Config(**DECODER),
    "gemma3_text": lambda: Gemma3TextConfig(**DECODER),
    "phi": lambda: PhiConfig(**{k: v for k, v in DECODER.items() if k != "head_dim"}),
    "phi3": lambda: Phi3Config(**{k: v for k, v in DECODER.items() if k != "head_dim"}),
    "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=WIDTH, n_layer=LAYERS, n_head=4, **IDS),
    "gpt_neox": lambda: GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        **IDS,
    ),
    "opt": lambda: OPTConfig(
        vocab_size=VOCAB,
        hidden_size=WIDTH,
        ffn_dim=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        word_embed_proj_dim=WIDTH,
        **IDS,
    ),
    "falcon": lambda: FalconConfig(
        vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=4, **IDS
    ),
}


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "gemma3":
        vision = dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        )
        config = Gemma3Config(text_config=DECODER, vision_config=vision, mm_tokens_per_image=4)
        return Gemma3ForConditionalGeneration(config).eval()
    return AutoModelForCausalLM.from_config(CONFIGS[kind]()).eval()


def context(batch: int = 2, width: int = WIDTH, seed: int = 1) -> MultimodalContext:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 6, width, generator=g)
    mask = torch.ones(batch, 6, dtype=torch.bool)
    mask[-1] = False  # the last row has no modality at all
    return MultimodalContext(latents, mask)


def open_gates(fusion: CrossAttentionFusion, value: float = 0.8, only: int | None = None) -> None:
    with torch.no_grad():
        for position, block in enumerate(fusion.blocks):
            if only is None or position == only:
                block.attn_gate.fill_(value)
                block.ff_gate.fill_(value)


INPUT = torch.tensor([[5, 9, 13, 3, 7], [4, 8, 11, 6, 10]])


def test_table_covers_the_required_architectures():
    for kind in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "phi", "phi3"):
        assert kind in DECODER_LAYER_PATHS


@pytest.mark.parametrize("kind", sorted(CONFIGS) + ["gemma3"])
def test_attach_keeps_the_base_model_until_gates_open(kind):
    lm = build(kind)
    layers = decoder_layers(lm)
    assert model_type(lm) == kind and len(layers) == LAYERS and hidden_size(lm) == WIDTH
    names = list(lm.state_dict().keys())
    with torch.no_grad():
        base = lm(INPUT).logits
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=2, heads=4, ff_mult=2))
    fusion.attach(lm)
    assert fusion.layer_indices == (1, 3)
    assert list(lm.state_dict().keys()) == names  # base checkpoint names unchanged
    ctx = context()
    with torch.no_grad(), fusion.use_context(ctx):
        closed = lm(INPUT).logits
    torch.testing.assert_close(closed, base, rtol=0, atol=1e-6)
    open_gates(fusion)
    with torch.no_grad(), fusion.use_context(ctx):
        opened = lm(INPUT).logits
    assert (opened[0] - base[0]).abs().max() > 1e-4
    # A row with no context is the base LM's row. Mixture-of-experts layers batch tokens per
    # expert across rows, so another row's change can reorder the sums: equal to float rounding.
    if kind == "mixtral":
        torch.testing.assert_close(opened[1], closed[1], rtol=0, atol=1e-6)
    else:
        assert torch.equal(opened[1], closed[1])
    with torch.no_grad():
        outside = lm(INPUT).logits
    assert torch.equal(outside, base)  # outside the context the hooks do nothing


def test_peft_wrapped_model_is_looked_through():
    lm = build("llama")
    with torch.no_grad():
        base = lm(INPUT).logits
    peft_lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    names = list(peft_lm.state_dict().keys())
    assert model_type(peft_lm) == "llama"
    fusion = CrossAttentionFusion.for_lm(peft_lm, FusionConfig(heads=4))
    fusion.attach(peft_lm)
    assert list(peft_lm.state_dict().keys()) == names
    assert not any("to_q" in n or "ff_in" in n for n in names)
    ctx = context()
    with torch.no_grad(), fusion.use_context(ctx):
        torch.testing.assert_close(peft_lm(input_ids=INPUT).logits, base, rtol=0, atol=1e-6)
    open_gates(fusion)
    with fusion.use_context(ctx):
        logits = peft_lm(input_ids=INPUT).logits
    logits[0].sum().backward()
    assert fusion.blocks[0].attn_gate.grad.abs() > 0


def test_lm_in_bfloat16_with_fusion_in_float32():
    lm = build("qwen2").to(torch.bfloat16)
    with torch.no_grad():
        base = lm(INPUT).logits
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(heads=4))
    fusion.attach(lm)
    with torch.no_grad(), fusion.use_context(context()):
        assert torch.equal(lm(INPUT).logits, base)
        open_gates(fusion)
        assert torch.isfinite(lm(INPUT).logits).all()


def test_blocks_run_before_the_chosen_layers_only():
    lm = build("llama")
    layers = decoder_layers(lm)
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=2, heads=4))
    fusion.attach(lm)
    open_gates(fusion, only=1)  # only the block before layer 3
    seen = {}

    def record(index):
        return lambda mod, args, kwargs: seen.__setitem__(index, args[0].detach().clone())

    for index, layer in enumerate(layers):
        layer.register_forward_pre_hook(record(index), with_kwargs=True)  # runs after the fusion hook
    with torch.no_grad():
        lm(INPUT)
        base = dict(seen)
        with fusion.use_context(context()):
            lm(INPUT)
    for index in (0, 1, 2):
        assert torch.equal(seen[index], base[index])
    assert not torch.equal(seen[3][0], base[3][0])


def test_every_n_placement():
    assert CrossAttentionFusion(4, 8, FusionConfig(every_n=1, heads=2)).layer_indices == (0, 1, 2, 3)
    assert CrossAttentionFusion(6, 8, FusionConfig(every_n=3, heads=2)).layer_indices == (2, 5)
    with pytest.raises(ConfigError, match="places no block"):
        CrossAttentionFusion(4, 8, FusionConfig(every_n=5, heads=2))
    with pytest.raises(ConfigError, match="at least 1"):
        CrossAttentionFusion(4, 8, FusionConfig(every_n=0, heads=2))


def test_unknown_architecture_names_the_type_and_the_table():
    class Other(nn.Module):
        config = SimpleNamespace(model_type="mamba")

    with pytest.raises(ConfigError) as err:
        decoder_layers(Other())
    assert "mamba" in str(err.value) and "llama" in str(err.value) and "gpt2" in str(err.value)


class KeywordLayer(nn.Module):
    def forward(self, hidden_states):
        return hidden_states * 2.0


class KeywordLM(nn.Module):
    """A minimal stand-in whose layers take hidden states only by keyword."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(model_type="llama", hidden_size=8)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([KeywordLayer(), KeywordLayer()])

    def forward(self, x):
        for layer in self.model.layers:
            x = layer(hidden_states=x)
        return x


def test_hidden_states_passed_by_keyword():
    lm = KeywordLM()
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=1, heads=2))
    fusion.attach(lm)
    open_gates(fusion)
    x = torch.randn(2, 3, 8)
    with fusion.use_context(context(width=8)):
        out = lm(x)
    expected = x
    ctx = context(width=8)
    for block in fusion.blocks:
        expected = 2.0 * block(expected, ctx.latents, ctx.mask)
    torch.testing.assert_close(out, expected)
    assert not torch.equal(out[0], 4 * x[0]) and torch.equal(out[1], 4 * x[1])


def test_context_is_cleared_even_when_the_forward_raises():
    lm = build("llama")
    with torch.no_grad():
        base = lm(INPUT).logits
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(heads=4))
    fusion.attach(lm)
    open_gates(fusion)
    with pytest.raises(ConfigError, match="repeat_interleave"):
        with fusion.use_context(context(batch=3)):  # batch mismatch raises inside the LM's forward
            lm(INPUT)
    assert fusion.context is None
    with pytest.raises(RuntimeError, match="boom"):
        with fusion.use_context(context()):
            raise RuntimeError("boom")
    assert fusion.context is None
    with torch.no_grad():
        assert torch.equal(lm(INPUT).logits, base)


def test_attach_detach_and_mismatched_model():
    lm = build("llama")
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(heads=4))
    fusion.attach(lm)
    with pytest.raises(ConfigError, match="already attached"):
        fusion.attach(lm)
    fusion.detach()
    open_gates(fusion)
    with torch.no_grad():
        base = lm(INPUT).logits
        with fusion.use_context(context()):
            assert torch.equal(lm(INPUT).logits, base)  # detached: no effect
    with pytest.raises(ConfigError, match="decoder layers"):
        CrossAttentionFusion(6, WIDTH, FusionConfig(heads=4)).attach(lm)


def test_fusion_state_dict_holds_only_its_blocks():
    lm = build("gpt2")
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(heads=4))
    fusion.attach(lm)
    assert all(name.startswith("blocks.") for name in fusion.state_dict())
    lora_targets = {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "c_attn",
        "c_proj",
        "c_fc",
        "dense",
        "fc1",
        "fc2",
        "query",
        "key",
        "value",
    }
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in fusion.named_modules()}
    assert not leaf_names & lora_targets


def test_gradient_reaches_an_encoder_only_through_rows_where_it_is_present():
    torch.manual_seed(0)
    image_enc = ImageEncoder(ImageEncoderConfig(dim=12, init_features=8, growth_rate=4, block_config=(1, 1)))
    vitals_enc = VitalsEncoder(VitalsEncoderConfig(num_channels=3, dim=8, depth=1, heads=2, max_steps=8))
    image_res = PerceiverResampler(12, WIDTH, num_latents=4, depth=1, heads=4)
    vitals_res = PerceiverResampler(8, WIDTH, num_latents=4, depth=1, heads=4)
    lm = build("llama")
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(every_n=2, heads=4))
    fusion.attach(lm)
    open_gates(fusion)

    pixels = torch.randn(2, 1, 64, 64)
    values, observed = torch.randn(2, 6, 3), torch.rand(2, 6, 3) > 0.3
    image = image_res(*image_enc(pixels, torch.tensor([True, False])))  # row 1 has no image
    vitals = vitals_res(*vitals_enc(values, observed, torch.tensor([True, True])))
    ctx = MultimodalContext.from_parts({"image": image, "vitals": vitals})
    with fusion.use_context(ctx):
        logits = lm(INPUT).logits
    logits[1].pow(2).sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in image_enc.parameters())
    assert vitals_enc.value_in.weight.grad.abs().sum() > 0  # row 1 does see its vitals
    logits[0].pow(2).sum().backward()
    assert image_enc.features.conv0.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_qlora_lm_with_gradient_checkpointing(tmp_path, cpu_4bit_kernel):
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    from medmm.lm.fourbit import use_cpu_kernel

    torch.manual_seed(0)
    config = LlamaConfig(**{**DECODER, "hidden_size": 64, "intermediate_size": 128, "head_dim": 16})
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    lm = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quant, device_map="cpu")
    assert use_cpu_kernel(lm) == cpu_4bit_kernel
    lm = prepare_model_for_kbit_training(lm)  # also turns on gradient checkpointing
    lm = get_peft_model(lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    lm.eval()
    with torch.no_grad():
        base = lm(input_ids=INPUT).logits
    fusion = CrossAttentionFusion.for_lm(lm, FusionConfig(heads=4))
    fusion.attach(lm)
    ctx = context(width=64)
    with torch.no_grad(), fusion.use_context(ctx):
        assert torch.equal(lm(input_ids=INPUT).logits, base)
    open_gates(fusion)
    lm.train()
    with fusion.use_context(ctx):
        logits = lm(input_ids=INPUT).logits
    logits[0].pow(2).sum().backward()  # backward runs outside the context: the blocks are not recomputed
    assert all(block.attn_gate.grad.abs() > 0 for block in fusion.blocks)
    lora = [p for n, p in lm.named_parameters() if "lora_" in n]
    assert lora and any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
