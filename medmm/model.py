"""MedMM: modality encoders -> Perceiver resamplers -> gated cross-attention into a causal LM.

Two outputs from one LM pass: multi-label diagnosis logits from the hidden state at the end of
the prompt, and the LM loss on the impression (or answer) that follows it. `generate` writes an
impression conditioned on every present modality; encoder outputs and cross-attention keys and
values are computed once per case and reused for every new token. With `impression_guide` the
impression is guided by the diagnoses the head rates positive: one clause per diagnosis, each
written after a prompt that names it (`impression_guides`, `clause_prompts`, `write_impressions`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.encoders.text import TextEncoder, TextEncoderConfig
from medmm.encoders.vitals import SUMMARY_FEATURES, VitalsEncoder, VitalsEncoderConfig
from medmm.errors import ConfigError
from medmm.fusion.context import MultimodalContext
from medmm.fusion.layers import CrossAttentionFusion, FusionConfig
from medmm.fusion.resampler import PerceiverResampler
from medmm.lm.backbone import Backbone, BackboneConfig, load_backbone
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.lm.text import chat_frame, prompt_token_ids
from medmm.records import MODALITIES
from medmm.scope import InputScope
from medmm.tasks import DEFAULT_TASK, Task, default_vocabulary, load_task
from medmm.transforms.study import PreprocessConfig


@dataclass(frozen=True)
class ResamplerConfig:
    num_latents: int = 32  # latents per modality
    depth: int = 2
    heads: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """The whole model. Field comments are the documentation of each option."""

    diagnoses: tuple[str, ...] = field(
        default_factory=lambda: tuple(default_vocabulary())
    )  # output order of the diagnosis head (default: the default task's labels)
    modalities: tuple[str, ...] = MODALITIES  # which encoders exist (any subset of image, notes, vitals)
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    notes: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    vitals: VitalsEncoderConfig = field(default_factory=VitalsEncoderConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # What each encoder was trained to read (image modality, body part, view, ...; note types). It
    # travels with the checkpoint, and every study is checked against it before the model reads it.
    scope: InputScope = field(default_factory=InputScope)
    head_hidden: int = 256  # width of the diagnosis head's hidden layer
    # The diagnosis head reads the LM's pooled hidden state and, with this on, each modality's mean
    # resampler latent (zeros when absent). With the gates closed at the start the LM passes no
    # gradient to the encoders; this path does, so they learn before the gates open.
    head_reads_latents: bool = True
    # One linear diagnosis head per modality on its mean resampler latent, trained beside the
    # fused head (train.unimodal_loss_weight). Fused training lets the modality that explains the
    # labels soonest (here the pretrained image) starve the others; a loss of its own gives each
    # modality's resampler its own gradient. Used in training only; predictions read the fused head.
    unimodal_heads: bool = False
    modality_dropout: float = 0.0  # training only: chance of hiding each present modality of a row
    max_new_tokens: int = 48  # default impression length
    # Guided impression: the prompt of the impression names the diagnoses whose calibrated
    # probability reaches their operating threshold (fitted on the validation split by the
    # calibration; guide_threshold where there is none): "Impression: [suspected: ...]". The
    # diagnosis head still pools the plain "Impression:" prompt, so the guide never reaches it.
    impression_guide: bool = False
    guide_threshold: float = 0.5  # calibrated probability at which a diagnosis is named, without operating thresholds
    # Which diagnoses the guide names once the model is calibrated: "operating" (probability at or
    # above the diagnosis's operating threshold) or "conformal" (the conformal set: every
    # diagnosis not ruled out at the calibrated coverage, a differential as the interface shows it).
    guide_set: str = "operating"
    # A guided impression is written one clause per suspected diagnosis, most probable first: the
    # LM writes each clause after a guide that names that diagnosis alone, and the clauses are
    # joined. A small LM copies a one-name guide reliably but often stops after the first name of
    # a longer one. Off: one generation after the whole guide.
    guide_clauses: bool = True


@dataclass
class MedMMOutput:
    diagnosis_logits: Tensor  # (B, K)
    lm_loss: Tensor | None  # scalar, None without targets
    lm_logits: Tensor  # (B, T, V)
    # with config.unimodal_heads: modality -> (logits (B, K), present (B,) bool)
    modality_logits: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)


class MedMM(nn.Module):
    """The fused model. Build it with :func:`build_model`."""

    def __init__(self, config: ModelConfig, backbone: Backbone, text_backbone: nn.Module | None = None):
        super().__init__()
        unknown = set(config.modalities) - set(MODALITIES)
        if unknown or not config.modalities:
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}", where="model.modalities")
        if config.guide_set not in ("operating", "conformal"):
            raise ConfigError(f"expected operating or conformal, got {config.guide_set!r}", where="model.guide_set")
        if not 0.0 <= config.guide_threshold <= 1.0:
            raise ConfigError(
                f"expected a probability in [0, 1], got {config.guide_threshold}", where="model.guide_threshold"
            )
        self.config = config
        self.task: Task | None = None  # set by build_model: the labels' and channels' names and codes
        self.tokenizer = backbone.tokenizer
        self.backbone_info = backbone
        dim = backbone.hidden_size
        encoders: dict[str, nn.Module] = {}
        if "image" in config.modalities:
            encoders["image"] = ImageEncoder(config.image)
        if "notes" in config.modalities:
            encoders["notes"] = TextEncoder(config.notes, backbone=text_backbone)
        if "vitals" in config.modalities:
            encoders["vitals"] = VitalsEncoder(config.vitals)
        self.encoders = nn.ModuleDict(encoders)
        r = config.resampler
        self.resamplers = nn.ModuleDict(
            {name: PerceiverResampler(enc.dim, dim, r.num_latents, r.depth, r.heads) for name, enc in encoders.items()}
        )
        # With vitals summary tokens, a linear map of every channel's window statistics is also added
        # to every vitals latent (zero at the start): what a classical model reads off the grid reaches
        # the context and the heads directly, not only through attention over hundreds of step tokens.
        # Likewise, with a notes lexical embedding, its mean over the words read (a bag of words).
        if "notes" in encoders and config.notes.lexical_dim:
            self.lexical_skip = nn.Linear(config.notes.lexical_dim, dim)
            nn.init.zeros_(self.lexical_skip.weight)
            nn.init.zeros_(self.lexical_skip.bias)
        if "vitals" in encoders and config.vitals.summary_tokens:
            self.summary_skip = nn.Linear(config.vitals.num_channels * (SUMMARY_FEATURES + 1), dim)
            nn.init.zeros_(self.summary_skip.weight)
            nn.init.zeros_(self.summary_skip.bias)
        self.lm = backbone.model
        self.fusion = CrossAttentionFusion.for_lm(backbone.base, config.fusion)
        self.fusion.attach(backbone.base)
        width = dim * (1 + len(encoders)) if config.head_reads_latents else dim
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, config.head_hidden),
            nn.GELU(),
            nn.Linear(config.head_hidden, len(config.diagnoses)),
        )
        self.unimodal_heads = nn.ModuleDict(
            {name: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, len(config.diagnoses))) for name in encoders}
            if config.unimodal_heads
            else {}
        )

    # -- encoding ------------------------------------------------------------------------------

    @property
    def displays(self) -> dict[str, str] | None:
        """Label name -> display name from the model's task (None before build_model sets it: the default table)."""
        return None if self.task is None else self.task.displays

    def presence(self, batch: dict) -> dict[str, Tensor]:
        """Per-row presence (B,) of each modality the model has."""
        out = {}
        if "image" in self.encoders:
            out["image"] = batch["image_present"].bool()
        if "notes" in self.encoders:
            out["notes"] = batch["notes_present"].bool().any(dim=1)
        if "vitals" in self.encoders:
            out["vitals"] = batch["vitals_present"].bool() & batch["vitals_observed"].bool().flatten(1).any(dim=1)
        return out

    def _dropout_keep(self, present: dict[str, Tensor]) -> dict[str, Tensor]:
        p = self.config.modality_dropout
        if not self.training or p <= 0:
            return present
        keep = {m: v & (torch.rand(v.shape, device=v.device) >= p) for m, v in present.items()}
        any_left = torch.stack(list(keep.values())).any(dim=0)  # (B,)
        # a row that lost everything keeps what it had, so every row still has some input
        return {m: torch.where(any_left, keep[m], present[m]) for m in keep}

    def _summary_keep(self, rows: int, device) -> Tensor | None:
        """(B,) bool in training with `vitals.summary_dropout`: the rows whose vitals statistics are used; else None."""
        p = self.config.vitals.summary_dropout
        if not self.training or p <= 0 or not self.config.vitals.summary_tokens:
            return None
        return torch.rand(rows, device=device) >= p

    def encode(
        self, batch: dict, *, cache_kv: bool = False, modalities: tuple[str, ...] | None = None
    ) -> MultimodalContext:
        """Encode the present modalities of `batch` into the LM's multimodal context.

        `modalities` restricts the input to a subset (ablations); the others are treated as absent.
        """
        present = self._dropout_keep(self.presence(batch))
        if modalities is not None:
            present = {m: v if m in modalities else torch.zeros_like(v) for m, v in present.items()}
        parts = {}
        if "image" in self.encoders:
            tokens, mask = self.encoders["image"](batch["image"], present["image"])  # (B, N, Di), (B, N)
            parts["image"] = self.resamplers["image"](tokens, mask)  # (B, K, D), (B, K)
        if "notes" in self.encoders:
            note_present = batch["notes_present"].bool() & present["notes"][:, None]  # (B, M)
            tokens, mask = self.encoders["notes"](
                batch.get("notes_ids"), batch["notes_attention"], note_present, embeddings=batch.get("notes_embeddings")
            )  # (B, M*L, Dt), (B, M*L)
            latents, keep = self.resamplers["notes"](tokens, mask)  # (B, K, D), (B, K)
            if hasattr(self, "lexical_skip"):
                read = batch["notes_attention"].bool() & note_present[..., None]  # (B, M, L)
                skip = self.lexical_skip(self.encoders["notes"].lexical_pool(batch["notes_ids"], read))  # (B, D)
                latents = latents + skip[:, None].to(latents.dtype) * keep[..., None].to(latents.dtype)  # (B, K, D)
            parts["notes"] = (latents, keep)
        if "vitals" in self.encoders:
            observed = batch["vitals_observed"].bool() & present["vitals"][:, None, None]  # (B, T, C)
            summary_keep = self._summary_keep(observed.shape[0], observed.device)  # (B,) or None
            tokens, mask = self.encoders["vitals"](
                batch["vitals"], observed, present["vitals"], summary_keep
            )  # (B, T*C [+ C], Dv)
            latents, keep = self.resamplers["vitals"](tokens, mask)  # (B, K, D), (B, K)
            if hasattr(self, "summary_skip"):
                skip = self.summary_skip(
                    self.encoders["vitals"].summary_features(batch["vitals"].to(latents.dtype), observed)
                )  # (B, D)
                if summary_keep is not None:
                    skip = skip * summary_keep.to(skip.dtype)[:, None]
                latents = latents + skip[:, None] * keep[..., None].to(latents.dtype)  # (B, K, D)
            parts["vitals"] = (latents, keep)
        return MultimodalContext.from_parts(parts, cache_kv=cache_kv)

    @staticmethod
    def mean_latent(context: MultimodalContext, name: str) -> tuple[Tensor, Tensor]:
        """Modality `name`'s masked mean latent (B, D) (zeros where absent) and whether it is present (B,)."""
        span = context.span(name)
        lat, keep = context.latents[:, span], context.mask[:, span].to(context.latents.dtype)  # (B, K_m, D), (B, K_m)
        mean = (lat * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)  # (B, D)
        return mean, context.mask[:, span].any(dim=1)

    def head_input(self, pooled: Tensor, context: MultimodalContext | None) -> Tensor:
        """The diagnosis head's input: pooled LM state (B, D), then each modality's masked mean latent (B, D) in encoder order."""
        dtype = self.head[0].weight.dtype
        parts = [pooled.to(dtype)]
        if self.config.head_reads_latents:
            for name in self.encoders:
                parts.append(
                    torch.zeros_like(parts[0]) if context is None else self.mean_latent(context, name)[0].to(dtype)
                )
        return torch.cat(parts, dim=-1)  # (B, D * (1 + M))

    def modality_logits(self, context: MultimodalContext) -> dict[str, tuple[Tensor, Tensor]]:
        """Each unimodal head's logits (B, K) and its modality's presence (B,); empty without unimodal heads."""
        out = {}
        for name, head in self.unimodal_heads.items():
            mean, present = self.mean_latent(context, name)
            out[name] = (head(mean.to(head[0].weight.dtype)), present)
        return out

    # -- training forward ----------------------------------------------------------------------

    def forward(
        self,
        batch: dict,
        input_ids: Tensor,
        attention_mask: Tensor,
        pool_index: Tensor,
        lm_labels: Tensor | None = None,
        context: MultimodalContext | None = None,
    ) -> MedMMOutput:
        """input_ids (B, T) hold prompt + target; pool_index (B,) is each row's last prompt token."""
        context = context if context is not None else self.encode(batch)
        with self.fusion.use_context(context):
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # (B, T, D)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[rows, pool_index.to(hidden.device)]  # (B, D)
        logits = self.head(self.head_input(pooled, context))  # (B, K)
        lm_loss = None
        if lm_labels is not None:
            shift_logits = out.logits[:, :-1].float()  # (B, T-1, V)
            shift_labels = lm_labels[:, 1:].to(shift_logits.device)  # (B, T-1)
            if bool((shift_labels != -100).any()):
                lm_loss = F.cross_entropy(
                    shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100
                )
        return MedMMOutput(logits, lm_loss, out.logits, self.modality_logits(context))

    # -- inference -----------------------------------------------------------------------------

    def prompt_ids(self, prompts: list[str], device: torch.device | str) -> tuple[Tensor, Tensor]:
        """Left-padded prompt ids (B, P) and attention mask: each row BOS (when the tokenizer has one) and the
        prompt, or the prompt as a user turn of the tokenizer's chat template (medmm.lm.text)."""
        tok = self.tokenizer
        frame = chat_frame(tok)
        rows = [prompt_token_ids(tok, p, frame) for p in prompts]
        if not rows or not all(rows):
            raise ConfigError("every prompt must give at least one token", where="generation prompts")
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)  # (B, P)
        attn = torch.zeros((len(rows), width), dtype=torch.long)  # (B, P)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r)
            attn[i, width - len(r) :] = 1
        return ids.to(device), attn.to(device)

    @torch.no_grad()
    def generate_ids(
        self,
        batch: dict,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        reuse_context: bool = True,
        modalities: tuple[str, ...] | None = None,
    ) -> Tensor:
        """Greedy new token ids (B, N) after each row's prompt; a row that ended has pad after its EOS.

        reuse_context=True encodes once and caches cross-attention keys/values (and uses the LM's
        own key/value cache); False recomputes encoders, keys/values and the whole sequence at
        every step, the slow reference the cached path must match token for token. EOS cannot
        be chosen before `min_new_tokens` new tokens (as in transformers' generate).
        """
        max_new = max_new_tokens or self.config.max_new_tokens
        device = self.head[0].weight.device
        ids, attn = self.prompt_ids(prompts, device)  # (B, P), (B, P)
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if reuse_context:
            context = self.encode(batch, cache_kv=True, modalities=modalities)
            with self.fusion.use_context(context):
                out = self.lm.generate(
                    input_ids=ids,
                    attention_mask=attn,
                    max_new_tokens=max_new,
                    min_new_tokens=min_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    eos_token_id=eos,
                    pad_token_id=pad,
                )  # (B, P + N)
            return out[:, ids.shape[1] :]  # (B, N)
        new = torch.full((ids.shape[0], 0), pad, dtype=torch.long, device=device)  # (B, 0)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)  # (B,)
        for step in range(max_new):
            context = self.encode(batch, cache_kv=False, modalities=modalities)
            seq = torch.cat([ids, new], dim=1)  # (B, P + t)
            mask = torch.cat([attn, torch.ones_like(new)], dim=1)  # (B, P + t)
            position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # what generate() uses for left padding
            with self.fusion.use_context(context):
                logits = self.lm(input_ids=seq, attention_mask=mask, position_ids=position_ids, use_cache=False).logits[
                    :, -1
                ]  # (B, V)
            if step < min_new_tokens and eos is not None:
                logits[:, eos] = float("-inf")
            nxt = torch.where(done, torch.full_like(done, pad, dtype=torch.long), logits.argmax(dim=-1))  # (B,)
            new = torch.cat([new, nxt[:, None]], dim=1)  # (B, t + 1)
            done |= nxt == eos
            if bool(done.all()):
                break
        return new

    def impression_guides(
        self, probs: np.ndarray, thresholds: Mapping[str, float] | None = None
    ) -> list[tuple[str, ...]]:
        """The diagnoses each row of calibrated probabilities (B, K) names in its guide, most probable first.

        A diagnosis is named when its probability reaches its threshold: `thresholds` (diagnosis
        -> probability; the calibrated operating points), else `guide_threshold`.
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(self.config.diagnoses):
            raise ConfigError(
                f"expected probabilities (B, {len(self.config.diagnoses)}), got {probs.shape}",
                where="impression prompts",
            )
        names = self.config.diagnoses
        cut = np.array([float((thresholds or {}).get(n, self.config.guide_threshold)) for n in names])  # (K,)
        return [tuple(names[k] for k in np.argsort(-row, kind="stable") if row[k] >= cut[k]) for row in probs]

    def clause_prompts(self, guide: Sequence[str]) -> list[str]:
        """The prompts an impression with this guide (most probable first) is written after, one per clause.

        Unguided: the plain prompt. Guided, one generation: the whole guide, least probable first.
        Clause by clause: one prompt per named diagnosis, or the "none" guide when it names none.
        """
        if not self.config.impression_guide:
            return [IMPRESSION_PROMPT]
        if not self.config.guide_clauses:
            return [guided_prompt(list(guide)[::-1], self.displays)]
        return [guided_prompt([name], self.displays) for name in guide] or [guided_prompt([], self.displays)]

    def write_impressions(
        self, batch: dict, guides: Sequence[Sequence[str]], *, max_new_tokens: int | None = None
    ) -> list[str]:
        """The impression of each row of `batch` after its guide (names, most probable first), greedy.

        Clauses of every row are generated together as one batch (each row repeated once per
        clause) and joined: "a (evidence), b (evidence)."
        """
        rows, prompts = [], []
        for row, guide in enumerate(guides):
            for prompt in self.clause_prompts(guide):
                rows.append(row)
                prompts.append(prompt)
        index = torch.tensor(rows, dtype=torch.long)
        texts = self.generate(select_rows(batch, index), prompts, max_new_tokens=max_new_tokens) if rows else []
        clauses: list[list[str]] = [[] for _ in guides]
        for row, text in zip(rows, texts):
            clauses[row].append(text)
        return [self.impression_from(parts) for parts in clauses]

    def impression_from(self, texts: Sequence[str]) -> str:
        """The impression from the texts generated after `clause_prompts`: joined clauses, or the one text."""
        if self.config.impression_guide and self.config.guide_clauses:
            return join_clauses(texts)
        return texts[0]

    def decode(self, new_ids: Tensor) -> list[str]:
        """Text of each row of new token ids (B, N), cut at the first EOS."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        texts = []
        for row in new_ids.tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tokenizer.decode([t for t in row if t != pad], skip_special_tokens=True).strip())
        return texts

    def generate(
        self,
        batch: dict,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        reuse_context: bool = True,
        modalities: tuple[str, ...] | None = None,
    ) -> list[str]:
        """Greedy text after each row's prompt, conditioned on the row's present modalities (see generate_ids)."""
        new = self.generate_ids(
            batch, prompts, max_new_tokens=max_new_tokens, reuse_context=reuse_context, modalities=modalities
        )
        return self.decode(new)


def select_rows(batch: dict, index: Tensor) -> dict:
    """The rows `index` (R,) of a collated batch, repeats allowed: tensors indexed on dim 0, lists picked."""
    rows = int(batch["image_present"].shape[0])
    out = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == rows:
            out[key] = value[index.to(value.device)]
        elif isinstance(value, list) and len(value) == rows:
            out[key] = [value[i] for i in index.tolist()]
        else:
            out[key] = value
    return out


def join_clauses(texts: Sequence[str]) -> str:
    """One impression from clauses each written as a whole impression ("a (evidence)."): "a (evidence), b."."""
    parts = [t.strip().rstrip(".").strip() for t in texts]
    parts = [p for p in parts if p]
    return ", ".join(parts) + "." if parts else ""


DEFAULT_ENCOUNTER_STEPS = 16  # a per-encounter task's grid: the latest 16 encounters of its window


def check_task(config: ModelConfig, task: Task) -> None:
    """A ConfigError unless `task` names the head's outputs (in order) and the vitals encoder's channels."""
    if tuple(config.diagnoses) != task.label_names:
        raise ConfigError(
            f"the model's labels {list(config.diagnoses)} are not task {task.name!r}'s {list(task.label_names)}",
            where="model.diagnoses",
        )
    if "vitals" in config.modalities and config.vitals.num_channels != len(task.channels):
        raise ConfigError(
            f"the vitals encoder reads {config.vitals.num_channels} channels, task {task.name!r} has {len(task.channels)}",
            where="model.vitals.num_channels",
        )


def config_for_task(config: ModelConfig, task: Task) -> ModelConfig:
    """`config` with the task's labels as the head's outputs, its channels as the vitals encoder's, and
    its vitals window as the preprocessing grid (hours and step; or one step per encounter, the latest
    `preprocess.encounter_steps`, default DEFAULT_ENCOUNTER_STEPS)."""
    preprocess = config.preprocess
    if task.vitals.per_encounter:
        steps = preprocess.encounter_steps or DEFAULT_ENCOUNTER_STEPS
        preprocess = dataclasses.replace(
            preprocess, window_hours=float(task.vitals.span.total_seconds()) / 3600.0, encounter_steps=steps
        )
    elif task.vitals.hours is not None and task.vitals.step_minutes is not None:
        preprocess = dataclasses.replace(
            preprocess,
            window_hours=float(task.vitals.hours),
            step_minutes=float(task.vitals.step_minutes),
            encounter_steps=0,
        )
    return dataclasses.replace(
        config,
        diagnoses=task.label_names,
        vitals=dataclasses.replace(config.vitals, num_channels=len(task.channels)),
        preprocess=preprocess,
    )


def build_model(
    config: ModelConfig,
    *,
    lm_dir=None,
    device: str | torch.device = "cpu",
    text_backbone: nn.Module | None = None,
    task: Task | None = None,
) -> MedMM:
    """Build MedMM from its config; `lm_dir` holds trained LM weights (else the backbone's source).

    `task` (default: the shipped synthetic-cxr task) names the labels and vital-sign channels; the
    model keeps it as `model.task`, and checkpoints store it."""
    task = task if task is not None else load_task(DEFAULT_TASK)
    check_task(config, task)
    backbone = load_backbone(config.backbone, weights_dir=lm_dir, device=device)
    model = MedMM(config, backbone, text_backbone=text_backbone)
    model.task = task
    for name, module in model.named_children():
        if name != "lm":
            module.to(device)
    return model
