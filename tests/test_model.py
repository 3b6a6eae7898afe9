"""MedMM at model level on tiny configs: closed gates equal the base LM, what trains, QLoRA,
every modality subset per row, and cached generation against recomputation.

The tiny-model helpers at the top are shared with tests/test_checkpoint.py and tests/test_predict.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
)

from medmm.encoders.image import ImageEncoderConfig
from medmm.encoders.text import TextEncoderConfig
from medmm.encoders.vitals import VitalsEncoderConfig
from medmm.errors import ConfigError
from medmm.fusion.layers import FusionConfig
from medmm.lm.adapters import FinetuneConfig
from medmm.lm.backbone import BackboneConfig, embedded_config, load_backbone
from medmm.lm.text import lm_inputs
from medmm.lm.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_tokenizer
from medmm.model import MedMM, ModelConfig, ResamplerConfig, build_model, join_clauses, select_rows
from medmm.records import MODALITIES
from medmm.transforms.study import PreprocessConfig

# -- tiny models shared by the model, checkpoint and predictor tests ----------------------------

NOTE_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] patient reports cough fever chest pain no acute distress crackles right left "
    "lower lobe dyspnoea oedema ankle sudden rigors confusion stable well and with of . , on the at rest breath "
    "sounds reduced denies"
).split()
TINY_LM = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
# QLoRA needs widths every 4-bit kernel takes (output features a multiple of 32, input of 64).
TINY_4BIT_LM = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)


def note_tokenizer() -> BertTokenizerFast:
    """A word-level BERT tokenizer over NOTE_WORDS (ids are the word's index)."""
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(NOTE_WORDS)}, do_lower_case=True)


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(NOTE_WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertModel(config).eval()


def tiny_config(
    *, finetune: str = "frozen", source: str = "embedded", notes_frozen: bool = True, norm: str = "instance", **fields
) -> ModelConfig:
    """A MedMM config small enough to build and run in well under a second."""
    config = ModelConfig(
        image=ImageEncoderConfig(dim=16, init_features=8, growth_rate=4, block_config=(1, 1), bn_size=2, norm=norm),
        notes=TextEncoderConfig(frozen=notes_frozen),
        vitals=VitalsEncoderConfig(dim=16, depth=1, heads=2, max_steps=8),
        resampler=ResamplerConfig(num_latents=4, depth=1, heads=2),
        fusion=FusionConfig(every_n=1, heads=2, ff_mult=2),
        backbone=BackboneConfig(
            source=source,
            **TINY_4BIT_LM if finetune == "qlora" else TINY_LM,
            finetune=FinetuneConfig(method=finetune, lora_r=4, lora_alpha=8, lora_dropout=0.0),
        ),
        preprocess=PreprocessConfig(image_size=32, max_notes=2, max_note_tokens=8, window_hours=4.0, step_minutes=60.0),
        head_hidden=16,
        max_new_tokens=8,
    )
    return dataclasses.replace(config, **fields)


def tiny_model(config: ModelConfig | None = None, *, seed: int = 0, lm_dir=None) -> MedMM:
    torch.manual_seed(seed)
    return build_model(config or tiny_config(), text_backbone=tiny_bert(seed), lm_dir=lm_dir)


def random_batch(config: ModelConfig, rows: int, *, seed: int = 0) -> dict:
    """A preprocessed-looking batch with every modality present in every row."""
    g = torch.Generator().manual_seed(seed)
    p = config.preprocess
    steps, channels = p.vitals_steps, config.vitals.num_channels
    return {
        "image": torch.rand(rows, 1, p.image_size, p.image_size, generator=g),
        "image_present": torch.ones(rows, dtype=torch.bool),
        "notes_ids": torch.randint(5, len(NOTE_WORDS), (rows, p.max_notes, p.max_note_tokens), generator=g),
        "notes_attention": torch.ones(rows, p.max_notes, p.max_note_tokens, dtype=torch.long),
        "notes_present": torch.ones(rows, p.max_notes, dtype=torch.bool),
        "vitals": torch.randn(rows, steps, channels, generator=g),
        "vitals_observed": torch.rand(rows, steps, channels, generator=g) > 0.3,
        "vitals_present": torch.ones(rows, dtype=torch.bool),
    }


def set_presence(batch: dict, row: int, present: set[str]) -> None:
    """Mark the modalities of `row` absent unless named in `present` (their data stays, to prove it is ignored)."""
    batch["image_present"][row] = "image" in present
    batch["notes_present"][row] = "notes" in present
    batch["vitals_present"][row] = "vitals" in present


@torch.no_grad()
def open_gates(model: MedMM, value: float = 0.1) -> None:
    """Give every fusion gate a nonzero value so that the multimodal context changes the LM."""
    for i, block in enumerate(model.fusion.blocks):
        block.attn_gate.fill_(value * (1 + i))
        block.ff_gate.fill_(-value * (1 + i))


@torch.no_grad()
def randomize(module: torch.nn.Module, std: float, seed: int = 1) -> None:
    """Wider random weights than the init, so a random LM writes varied tokens instead of one repeated."""
    torch.manual_seed(seed)
    for p in module.parameters():
        if p.dim() == 2 and p.dtype.is_floating_point:
            p.normal_(0.0, std)


def lm_folder(kind: str, path: Path) -> Path:
    """Save a tiny random causal LM of architecture `kind` with the embedded tokenizer to `path` (4-bit-fit widths)."""
    tokenizer = build_tokenizer()
    ids = dict(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, vocab_size=len(tokenizer))
    sizes = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    if kind == "llama":
        config = LlamaConfig(**sizes, **ids)
    elif kind == "qwen2":
        config = Qwen2Config(**sizes, **ids)
    else:
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128, **ids)
    torch.manual_seed(3)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def prompt_batch(model: MedMM, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt + target rows of different lengths: ids, mask, pool index, labels."""
    prompts = ["Impression:", "Question: is there pneumonia? Answer:", "Findings"][:rows]
    targets = ["right lower lobe pneumonia.", None, "no acute cardiopulmonary diagnosis."][:rows]
    lm = lm_inputs(model.tokenizer, prompts, targets)
    return lm.input_ids, lm.attention_mask, lm.pool_index, lm.labels


# -- closed gates: the fused model is the base LM ----------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_closed_gates_give_the_base_lm_logits(tmp_path, kind):
    folder = lm_folder(kind, tmp_path / kind)
    model = tiny_model(tiny_config(source=str(folder))).eval()
    assert model.backbone_info.model_type == kind
    batch = random_batch(model.config, 3)
    ids, attn, pool, _ = prompt_batch(model, 3)
    assert (attn == 0).any() and attn.sum(1).unique().numel() > 1  # rows of different lengths, right padding
    base = AutoModelForCausalLM.from_pretrained(folder).eval()  # loaded apart from medmm
    with torch.no_grad():
        fused = model(batch, ids, attn, pool).lm_logits  # (3, T, V)
        expected = base(input_ids=ids, attention_mask=attn).logits  # (3, T, V)
        torch.testing.assert_close(fused, expected, rtol=0, atol=1e-6)
        open_gates(model)
        opened = model(batch, ids, attn, pool).lm_logits
    valid = attn.bool()
    assert (opened - expected)[valid].abs().max() > 1e-3  # the blocks do run; the gates alone hold them at zero


# -- parameter names and the trainable set -----------------------------------------------------


@pytest.mark.parametrize("finetune", ["frozen", "lora", "qlora"])
def test_base_parameter_names_are_unchanged_by_fusion(finetune):
    config = tiny_config(finetune=finetune)
    model = tiny_model(config)
    bare = load_backbone(config.backbone).model  # the same LM set-up with no fusion attached
    assert list(model.lm.state_dict()) == list(bare.state_dict())
    assert [n for n, _ in model.lm.named_parameters()] == [n for n, _ in bare.named_parameters()]
    if finetune == "frozen":
        plain = LlamaForCausalLM(embedded_config(config.backbone, len(model.tokenizer)))
        assert list(model.lm.state_dict()) == list(plain.state_dict())
    assert not any(n.startswith("lm.") and ("attn_gate" in n or "ff_gate" in n) for n, _ in model.named_parameters())


@pytest.mark.parametrize(
    ("finetune", "notes_frozen"), [("frozen", True), ("frozen", False), ("lora", True), ("qlora", True), ("full", True)]
)
def test_trainable_set_is_exactly_fusion_resamplers_heads_encoders_and_adapters(finetune, notes_frozen):
    model = tiny_model(tiny_config(finetune=finetune, notes_frozen=notes_frozen))
    names = [n for n, _ in model.named_parameters()]
    always = ("fusion.", "resamplers.", "head.", "encoders.image.", "encoders.vitals.")
    expected = {n for n in names if n.startswith(always)}
    if not notes_frozen:
        expected |= {n for n in names if n.startswith("encoders.notes.")}
    lm_names = [n for n in names if n.startswith("lm.")]
    if finetune == "full":
        expected |= set(lm_names)
    if finetune in ("lora", "qlora"):
        adapters = {n for n in lm_names if ".lora_A." in n or ".lora_B." in n}
        assert len(adapters) == 2 * TINY_LM["num_layers"] * 7  # A and B on q, k, v, o, gate, up, down of each layer
        expected |= adapters
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert {"encoders.image.features.conv0.weight", "fusion.blocks.0.attn_gate", "head.3.weight"} <= trainable
    model.train()
    assert model.encoders["notes"].backbone.training is not notes_frozen  # a frozen encoder stays in eval mode


# -- QLoRA on the CPU --------------------------------------------------------------------------


def test_qlora_forward_backward_and_step_keep_the_base_four_bit_and_frozen(cpu_4bit_kernel):
    model = tiny_model(tiny_config(finetune="qlora"))
    assert model.backbone_info.quantized
    four_bit = {n: p for n, p in model.named_parameters() if isinstance(p, bnb.nn.Params4bit)}
    assert len(four_bit) == TINY_4BIT_LM["num_layers"] * 7  # every targeted projection's base weight
    before = {n: p.detach().clone() for n, p in four_bit.items()}
    assert all(p.dtype == torch.uint8 and not p.requires_grad for p in four_bit.values())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)

    batch = random_batch(model.config, 3)
    ids, attn, pool, labels = prompt_batch(model, 3)
    model.eval()
    with torch.no_grad():  # a validation pass first: where the CPU has the fused kernel, it repacks here
        model(batch, ids, attn, pool, lm_labels=labels)
    model.train()
    out = model(batch, ids, attn, pool, lm_labels=labels)
    targets = torch.zeros_like(out.diagnosis_logits)
    targets[0, 1] = 1.0
    loss = F.binary_cross_entropy_with_logits(out.diagnosis_logits, targets) + out.lm_loss
    loss.backward()
    assert all(p.grad is None for p in four_bit.values())
    lora_b = [p for n, p in trainable.items() if ".lora_B." in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    gates = [p for n, p in trainable.items() if n.endswith("_gate")]
    assert all(p.grad.abs().sum() > 0 for p in gates)  # the zero gates learn from the first step
    optimizer.step()

    for name, p in four_bit.items():
        assert isinstance(p, bnb.nn.Params4bit) and p.dtype == torch.uint8 and not p.requires_grad
        assert torch.equal(p, before[name]), name
    assert all(not torch.equal(p, start[n]) for n, p in trainable.items() if ".lora_B." in n or n.endswith("_gate"))
    with torch.no_grad():
        again = model(batch, ids, attn, pool, lm_labels=labels)
    assert torch.isfinite(again.lm_loss) and torch.isfinite(again.diagnosis_logits).all()


# -- every modality subset, row by row ---------------------------------------------------------

SUBSETS = [
    {"image"},
    {"notes"},
    {"vitals"},
    {"image", "notes"},
    {"image", "vitals"},
    {"notes", "vitals"},
    set(MODALITIES),
]


def subset_batch(model: MedMM) -> dict:
    batch = random_batch(model.config, len(SUBSETS), seed=5)
    for row, present in enumerate(SUBSETS):
        set_presence(batch, row, present)
    return batch


@pytest.mark.parametrize(("norm", "train"), [("instance", True), ("batch", False)])
def test_every_modality_subset_runs_and_gradients_follow_presence_per_row(norm, train):
    """Row r's diagnosis logits must send gradients to exactly the encoders of r's modalities.

    A row's output must also depend on no other row. Batch norm in train mode breaks that (its
    statistics mix the images of the batch), so this runs with instance norm in train mode, or
    batch norm in eval mode (running statistics). Presence alone would survive batch norm,
    since absent rows never enter an encoder; the input-gradient checks would not (next test).
    """
    model = tiny_model(tiny_config(notes_frozen=False, norm=norm))
    open_gates(model)
    model.train(train)
    batch = subset_batch(model)
    batch["image"].requires_grad_(True)
    batch["vitals"].requires_grad_(True)
    ids, attn = model.prompt_ids(["Impression:"] * len(SUBSETS), "cpu")
    pool = torch.full((len(SUBSETS),), ids.shape[1] - 1)
    logits = model(batch, ids, attn, pool).diagnosis_logits  # (7, K)
    assert torch.isfinite(logits).all()
    assert model.presence(batch)["image"].tolist() == ["image" in s for s in SUBSETS]
    parts = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in MODALITIES}
    for row, present in enumerate(SUBSETS):
        inputs = [batch["image"], batch["vitals"]]
        flat = [p for m in MODALITIES for p in parts[m]] + inputs
        grads = torch.autograd.grad(logits[row].sum(), flat, retain_graph=True, allow_unused=True)
        norms, start = {}, 0
        for m in MODALITIES:
            chunk = grads[start : start + len(parts[m])]
            norms[m] = sum(float(g.abs().sum()) for g in chunk if g is not None)
            start += len(parts[m])
        for m in MODALITIES:
            assert (norms[m] > 0) == (m in present), (row, m, norms[m])
        image_grad, vitals_grad = grads[start:]
        others = [r for r in range(len(SUBSETS)) if r != row]
        assert not image_grad[others].any() and not vitals_grad[others].any()  # no row leaks into another
        assert bool(image_grad[row].any()) == ("image" in present)


def test_batch_norm_in_train_mode_couples_rows():
    """Why the test above avoids it: a row's output then depends on the other rows' images."""
    model = tiny_model(tiny_config(norm="batch")).train()
    open_gates(model)  # closed gates would hide every modality from the head
    batch = random_batch(model.config, 3)
    batch["image"].requires_grad_(True)
    ids, attn = model.prompt_ids(["Impression:"] * 3, "cpu")
    logits = model(batch, ids, attn, torch.full((3,), ids.shape[1] - 1)).diagnosis_logits
    (grad,) = torch.autograd.grad(logits[0].sum(), [batch["image"]])
    assert grad[1:].abs().sum() > 0


def test_each_row_of_a_mixed_batch_equals_that_row_alone():
    model = tiny_model().eval()
    open_gates(model)
    batch = subset_batch(model)
    rows = len(SUBSETS)
    ids, attn = model.prompt_ids(["Impression:"] * rows, "cpu")
    pool = torch.full((rows,), ids.shape[1] - 1)
    with torch.no_grad():
        together = model(batch, ids, attn, pool).diagnosis_logits  # (7, K)
        for row in range(rows):
            alone = model({k: v[row : row + 1] for k, v in batch.items()}, ids[:1], attn[:1], pool[:1]).diagnosis_logits
            torch.testing.assert_close(together[row : row + 1], alone, rtol=1e-4, atol=1e-5)
        # an absent modality's data is ignored: scrambling it changes nothing
        scrambled = {k: v.clone() for k, v in batch.items()}
        scrambled["image"][1:3] = torch.rand_like(scrambled["image"][1:3])  # rows without an image
        scrambled["vitals"][0:2] = torch.randn_like(scrambled["vitals"][0:2])  # rows without vitals
        torch.testing.assert_close(model(scrambled, ids, attn, pool).diagnosis_logits[:3], together[:3], rtol=0, atol=0)


def test_encode_restricted_to_modalities_masks_the_others():
    model = tiny_model().eval()
    batch = random_batch(model.config, 2)
    with torch.no_grad():
        context = model.encode(batch, modalities=("notes",))
    assert [s.name for s in context.spans] == ["image", "notes", "vitals"]
    assert context.mask[:, context.span("notes")].all()
    assert not context.mask[:, context.span("image")].any() and not context.mask[:, context.span("vitals")].any()
    assert context.latents.shape == (2, 3 * model.config.resampler.num_latents, TINY_LM["hidden_size"])


def test_head_input_is_pooled_state_then_each_modality_mean_latent_or_zeros():
    model = tiny_model().eval()
    batch = random_batch(model.config, 2)
    set_presence(batch, 1, {"image"})
    with torch.no_grad():
        context = model.encode(batch)
        pooled = torch.randn(2, TINY_LM["hidden_size"])
        features = model.head_input(pooled, context)
    d = TINY_LM["hidden_size"]
    assert features.shape == (2, 4 * d)
    torch.testing.assert_close(features[:, :d], pooled)
    for k, name in enumerate(("image", "notes", "vitals")):
        block = features[:, (k + 1) * d : (k + 2) * d]
        torch.testing.assert_close(block[0], context.latents[0, context.span(name)].mean(dim=0))  # all present in row 0
        if name == "image":
            torch.testing.assert_close(block[1], context.latents[1, context.span(name)].mean(dim=0))
        else:  # absent in row 1: zeros, not the mean of masked latents
            assert torch.equal(block[1], torch.zeros(d))
    plain = tiny_model(tiny_config(head_reads_latents=False))
    assert plain.head[1].in_features == d and model.head[1].in_features == 4 * d


def test_modality_dropout_never_empties_a_row():
    model = tiny_model(tiny_config(modality_dropout=0.95)).train()
    batch = random_batch(model.config, 64)
    set_presence(batch, 0, {"vitals"})
    torch.manual_seed(0)
    kept = model._dropout_keep(model.presence(batch))
    stacked = torch.stack([kept[m] for m in MODALITIES])  # (3, 64)
    assert stacked.any(dim=0).all()
    assert not stacked.all(dim=0).all()  # something was dropped
    assert kept["vitals"][0] and not kept["image"][0]  # a single modality is kept
    model.eval()
    present = model.presence(batch)
    assert model._dropout_keep(present) is present  # never at inference


def test_unknown_modalities_are_a_config_error():
    with pytest.raises(ConfigError, match="modalities"):
        tiny_model(tiny_config(modalities=("image", "genome")))
    with pytest.raises(ConfigError, match="modalities"):
        tiny_model(tiny_config(modalities=()))


def test_impression_guides_name_the_diagnoses_at_or_above_the_threshold():
    model = tiny_model(tiny_config(impression_guide=True, guide_threshold=0.4))
    probs = np.array([[0.9, 0.1, 0.4, 0.39, 0.6], [0.0, 0.2, 0.3, 0.1, 0.39], [1.0, 1.0, 1.0, 1.0, 1.0]])  # (3, K)
    everything = ("pneumonia", "heart_failure", "pleural_effusion", "pneumothorax", "sepsis")  # ties: the fixed order
    assert model.impression_guides(probs) == [
        ("pneumonia", "sepsis", "pleural_effusion"),
        (),
        everything,
    ]  # 0.4 is at the threshold
    # calibrated operating thresholds replace guide_threshold for the diagnoses they name
    cut = {"pneumonia": 0.95, "heart_failure": 0.2, "sepsis": 0.7}
    assert model.impression_guides(probs, cut) == [("pleural_effusion",), ("heart_failure",), everything]
    with pytest.raises(ConfigError, match="expected probabilities"):
        model.impression_guides(probs[:, :4])
    with pytest.raises(ConfigError, match="probability") as err:
        tiny_model(tiny_config(guide_threshold=1.5))
    assert err.value.where == "model.guide_threshold"


def test_a_guided_impression_is_written_one_clause_per_suspected_diagnosis():
    model = tiny_model()
    model.config = dataclasses.replace(model.config, impression_guide=True, guide_threshold=0.4)
    probs = np.array([[0.9, 0.1, 0.4, 0.39, 0.6], [0.0, 0.2, 0.3, 0.1, 0.39]])  # (2, K)
    guides = model.impression_guides(probs)
    assert guides == [("pneumonia", "sepsis", "pleural_effusion"), ()]  # most probable first
    assert model.clause_prompts(guides[0]) == [
        "Impression: [suspected: pneumonia]",
        "Impression: [suspected: sepsis]",
        "Impression: [suspected: pleural effusion]",
    ]
    assert model.clause_prompts(()) == ["Impression: [suspected: none]"]
    model.config = dataclasses.replace(model.config, guide_clauses=False)  # one generation after the whole guide
    assert model.clause_prompts(guides[0]) == ["Impression: [suspected: pleural effusion; sepsis; pneumonia]"]
    model.config = dataclasses.replace(model.config, impression_guide=False)
    assert model.clause_prompts(guides[0]) == ["Impression:"]


def test_clauses_are_written_for_each_row_and_joined():
    model = tiny_model().eval()
    open_gates(model)
    model.config = dataclasses.replace(model.config, impression_guide=True)
    batch = random_batch(model.config, 2)
    guides = [("sepsis", "pneumonia"), ()]
    written = model.write_impressions(batch, guides, max_new_tokens=4)
    for row, guide in enumerate(guides):
        one = {k: v[row : row + 1] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        clauses = [model.generate(one, [p], max_new_tokens=4)[0] for p in model.clause_prompts(guide)]
        parts = [t.strip().rstrip(".").strip() for t in clauses]
        assert written[row] == (", ".join(p for p in parts if p) + "." if any(parts) else "")


def test_join_clauses_and_select_rows():
    assert join_clauses(["pneumonia (fever).", " sepsis.", "", "."]) == "pneumonia (fever), sepsis."
    assert join_clauses(["", " "]) == ""
    batch = {"image_present": torch.tensor([True, False]), "x": torch.arange(6).view(2, 3), "meta": ["a", "b"], "k": 3}
    picked = select_rows(batch, torch.tensor([1, 1, 0]))
    assert picked["image_present"].tolist() == [False, False, True] and picked["x"].tolist() == [
        [3, 4, 5],
        [3, 4, 5],
        [0, 1, 2],
    ]
    assert picked["meta"] == ["b", "b", "a"] and picked["k"] == 3


def test_unimodal_heads_read_each_present_modalitys_mean_latent():
    model = tiny_model(tiny_config(unimodal_heads=True)).eval()
    batch = random_batch(model.config, 3)
    set_presence(batch, 1, {"image"})
    context = model.encode(batch)
    got = model.modality_logits(context)
    assert set(got) == set(model.config.modalities)
    for name, (logits, present) in got.items():
        span = context.span(name)
        keep = context.mask[:, span].float()  # (B, K_m)
        mean = (context.latents[:, span] * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        torch.testing.assert_close(logits, model.unimodal_heads[name](mean))
        assert present.tolist() == [True, name == "image", True]
    assert tiny_model().modality_logits(context) == {}  # no unimodal heads: nothing


# -- the LM loss and the pooled diagnosis logits -----------------------------------------------


def test_lm_loss_is_the_shifted_cross_entropy_over_target_tokens():
    model = tiny_model().eval()
    open_gates(model)
    batch = random_batch(model.config, 3)
    ids, attn, pool, labels = prompt_batch(model, 3)
    with torch.no_grad():
        out = model(batch, ids, attn, pool, lm_labels=labels)
    losses = []
    for b in range(3):
        for t in range(ids.shape[1] - 1):
            if labels[b, t + 1] != -100:
                log_probs = out.lm_logits[b, t].double().log_softmax(-1)
                losses.append(-float(log_probs[labels[b, t + 1]]))
    assert len(losses) == int((labels != -100).sum())
    assert out.lm_loss.item() == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    prompt_only = model(batch, ids, attn, pool, lm_labels=torch.full_like(labels, -100))
    assert prompt_only.lm_loss is None


def test_diagnosis_logits_read_the_last_prompt_token_only():
    """The target after the prompt cannot change the diagnosis (causal LM, pooled at the prompt's end)."""
    model = tiny_model().eval()
    open_gates(model)
    batch = random_batch(model.config, 2)
    with_target = lm_inputs(model.tokenizer, ["Impression:"] * 2, ["pneumonia.", "sepsis and heart failure."])
    bare = lm_inputs(model.tokenizer, ["Impression:"] * 2, [None, None])
    assert torch.equal(with_target.pool_index, bare.pool_index)
    with torch.no_grad():
        a = model(batch, with_target.input_ids, with_target.attention_mask, with_target.pool_index).diagnosis_logits
        b = model(batch, bare.input_ids, bare.attention_mask, bare.pool_index).diagnosis_logits
        hidden = model.lm(input_ids=bare.input_ids, attention_mask=bare.attention_mask, output_hidden_states=True)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert a.shape == (2, len(model.config.diagnoses))
    with torch.no_grad():  # with no context in use, the head on the pooled base hidden state differs
        plain = model.head(model.head_input(hidden.hidden_states[-1][torch.arange(2), bare.pool_index], None))
    assert not torch.allclose(plain, b)


# -- generation: cached multimodal keys/values against recomputing everything ------------------

PROMPTS = ["Impression:", "Question: is there a pleural effusion? Answer:", "heart"]


@pytest.mark.parametrize("kind", ["embedded", "gpt2"])
def test_cached_generation_matches_recomputing_everything_per_step(tmp_path, kind):
    source = "embedded" if kind == "embedded" else str(lm_folder(kind, tmp_path / kind))
    model = tiny_model(tiny_config(source=source)).eval()
    randomize(model.lm, 0.1)
    open_gates(model)
    batch = random_batch(model.config, 3)
    calls = {"kv": 0, "encoder": 0}
    for block in model.fusion.blocks:
        block.attn.to_kv.register_forward_hook(lambda *a: calls.__setitem__("kv", calls["kv"] + 1))
    model.encoders["vitals"].register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    steps = 10
    cached = model.generate_ids(batch, PROMPTS, max_new_tokens=steps, min_new_tokens=steps)
    assert calls == {"kv": len(model.fusion.blocks), "encoder": 1}  # once per case, not per token
    calls.update(kv=0, encoder=0)
    recomputed = model.generate_ids(batch, PROMPTS, max_new_tokens=steps, min_new_tokens=steps, reuse_context=False)
    assert calls == {"kv": steps * len(model.fusion.blocks), "encoder": steps}
    assert cached.shape == (3, steps) and torch.equal(cached, recomputed)
    assert len({tuple(r) for r in cached.tolist()}) == 3 and len(set(cached.flatten().tolist())) > 3
    for row in range(3):  # left padding changes nothing: each row as a batch of one
        one = {k: v[row : row + 1] for k, v in batch.items()}
        alone = model.generate_ids(one, PROMPTS[row : row + 1], max_new_tokens=steps, min_new_tokens=steps)
        assert torch.equal(alone[0], cached[row])
    open_gates(model, 0.0)
    assert not torch.equal(
        model.generate_ids(batch, PROMPTS, max_new_tokens=steps, min_new_tokens=steps), cached
    )  # the context matters


def test_generation_stops_at_eos_and_pads_after_it():
    model = tiny_model().eval()
    randomize(model.lm, 0.1)
    open_gates(model)
    batch = random_batch(model.config, 3)
    free = model.generate_ids(batch, PROMPTS, max_new_tokens=6)
    with torch.no_grad():  # EOS now outscores the token row 0 wrote at step 3, wherever its logit is positive
        head = model.lm.get_output_embeddings().weight
        head[EOS_ID] = 2.0 * head[int(free[0, 3])]
    for reuse in (True, False):
        ids = model.generate_ids(batch, PROMPTS, max_new_tokens=6, reuse_context=reuse)
        assert EOS_ID in ids[0].tolist()
        texts = model.generate(batch, PROMPTS, max_new_tokens=6, reuse_context=reuse)
        for row, text in zip(ids.tolist(), texts):
            if EOS_ID in row:
                cut = row.index(EOS_ID)
                assert all(t == PAD_ID for t in row[cut + 1 :])
                row = row[:cut]
            assert text == model.tokenizer.decode(row, skip_special_tokens=True).strip()
    forced = model.generate_ids(batch, PROMPTS, max_new_tokens=6, min_new_tokens=6)
    assert forced.shape == (3, 6) and EOS_ID not in forced.tolist()


# -- direct paths: vitals window statistics and the notes' bag of words -------------------------


def test_the_summary_and_lexical_paths_add_a_linear_map_to_each_present_latent():
    from medmm.encoders.vitals import VitalsEncoder

    config = tiny_config()
    config = dataclasses.replace(
        config,
        vitals=dataclasses.replace(config.vitals, summary_tokens=True),
        notes=dataclasses.replace(config.notes, lexical_dim=4),
    )
    model = tiny_model(config).eval()
    batch = random_batch(config, 3)
    set_presence(batch, 2, {"image"})  # row 2: no notes, no vitals
    with torch.no_grad():
        start = model.encode(batch)
        model.summary_skip.weight.normal_()
        model.lexical_skip.weight.normal_()
        moved = model.encode(batch)
    vitals, notes = start.span("vitals"), start.span("notes")
    observed = batch["vitals_observed"].bool() & batch["vitals_present"].bool()[:, None, None]
    with torch.no_grad():
        expected = model.summary_skip(VitalsEncoder.summary_features(batch["vitals"], observed))  # (B, D)
    delta = moved.latents[:, vitals] - start.latents[:, vitals]
    torch.testing.assert_close(
        delta[:2], expected[:2, None].expand(-1, delta.shape[1], -1)
    )  # zero at init, then exactly the map
    assert not delta[2].any() and not (moved.latents[2, notes] - start.latents[2, notes]).any()  # absent rows untouched
    assert (moved.latents[:2, notes] - start.latents[:2, notes]).abs().sum() > 0
    model.train()
    model.encode(batch).latents.sum().backward()
    assert model.summary_skip.weight.grad.abs().sum() > 0 and model.lexical_skip.weight.grad.abs().sum() > 0
    assert model.encoders["notes"].lexical.weight.grad.abs().sum() > 0


def test_summary_dropout_hides_a_rows_statistics_in_training_only():
    config = tiny_config()
    config = dataclasses.replace(
        config, vitals=dataclasses.replace(config.vitals, summary_tokens=True, summary_dropout=1.0)
    )
    model = tiny_model(config)
    batch = random_batch(config, 3)
    with torch.no_grad():
        model.summary_skip.weight.normal_()
        model.summary_skip.bias.normal_()
        model.eval()
        context = model.encode(batch)
        vitals = context.span("vitals")
        model.train()
        model.config = dataclasses.replace(model.config, modality_dropout=0.0)
        trained = model.encode(batch).latents[:, vitals]
        # by hand: the same encoder with every summary token masked and the linear path off
        observed = batch["vitals_observed"].bool() & batch["vitals_present"].bool()[:, None, None]
        tokens, mask = model.encoders["vitals"](
            batch["vitals"], observed, batch["vitals_present"].bool(), torch.zeros(3, dtype=torch.bool)
        )
        expected, _ = model.resamplers["vitals"](tokens, mask)
    torch.testing.assert_close(trained, expected)  # in training every row lost its statistics (p = 1)
    assert not torch.allclose(context.latents[:, vitals], expected)  # served: the statistics are always used
    assert model._summary_keep(3, "cpu") is not None and model.eval()._summary_keep(3, "cpu") is None
