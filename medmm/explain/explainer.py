"""Every explanation of one study: each diagnosis and the impression, by each method, on the inputs.

`explain_study(predictor, study)` is what the UI, the reports and `medmm explain` call. It never
changes the model: attention is read through hooks, gradients are taken with
``torch.autograd.grad`` (or put back, for Grad-CAM), and the model's mode is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from medmm.errors import ConfigError
from medmm.explain.capture import IMPRESSION, Target, diagnosis_target, impression_target
from medmm.explain.gradcam import gradcam_relevance
from medmm.explain.integrated import DEFAULT_STEPS, ig_relevance
from medmm.explain.mapping import Explanation, image_map, notes_map, vitals_map
from medmm.explain.relevance import ATTENTION_METHODS, TokenRelevance, attention_relevance, token_validity
from medmm.records import MODALITIES, Study

METHODS = ("attention", "rollout", "gradcam", "integrated_gradients")
METHOD_LABELS = {
    "attention": "attention (gradient-weighted)",
    "rollout": "attention rollout",
    "gradcam": "Grad-CAM",
    "integrated_gradients": "integrated gradients",
}


@dataclass(frozen=True)
class StudyExplanation:
    """The explanations of one study, with the prediction they explain."""

    study_id: str
    probabilities: Mapping[str, float]  # diagnosis -> calibrated probability
    impression: str  # the grounded impression, as Predictor gives it (the relevance explains the LM draft behind it)
    present: tuple[str, ...]  # modalities the model read
    explanations: tuple[Explanation, ...]
    displays: Mapping[str, str] = field(default_factory=dict)  # label name -> display name (the model's task)

    def display(self, target: str) -> str:
        """A target's display name (its name when the task has none for it)."""
        return self.displays.get(target, target)

    def get(self, target: str, method: str) -> Explanation | None:
        """The explanation of `target` by `method`, or None when it was not computed."""
        return next((e for e in self.explanations if e.target == target and e.method == method), None)


def token_relevances(
    model, batch: dict, targets: Sequence[Target], methods: Sequence[str] = METHODS, *, n_steps: int = DEFAULT_STEPS
) -> list[TokenRelevance]:
    """Token-level relevance of each target by each method for a one-case batch (methods that do not apply are left out)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}", where="explain methods")
    out = []
    attention = [m for m in methods if m in ATTENTION_METHODS]
    if attention:
        out += attention_relevance(model, batch, targets, attention)
    for target in targets:
        if "gradcam" in methods:
            out.append(gradcam_relevance(model, batch, target))
        if "integrated_gradients" in methods:
            out.append(ig_relevance(model, batch, target, n_steps=n_steps))
    return [r for r in out if r is not None]


def map_relevance(
    study: Study,
    batch: dict,
    relevance: TokenRelevance,
    probability: float | None,
    max_notes: int,
    channels: Sequence[str],
) -> Explanation:
    """Token relevance of one case mapped onto the study's pixels, time axis and words (`channels`: the model's vitals columns)."""
    maps = relevance.maps
    vitals = notes = image = None
    if "image" in maps:
        image = image_map(study, maps["image"])
    if "vitals" in maps:
        vitals = vitals_map(study, maps["vitals"], batch["vitals_observed"][0].bool().cpu().numpy(), channels)
    if "notes" in maps:
        valid = (batch["notes_attention"][0].bool() & batch["notes_present"][0].bool()[:, None]).cpu().numpy()  # (M, L)
        notes = notes_map(study, maps["notes"], batch["notes_offsets"][0].cpu().numpy(), valid, max_notes)
    return Explanation(relevance.target, relevance.method, probability, image, vitals, notes, dict(relevance.share))


def explain_study(
    predictor,
    study: Study,
    *,
    methods: Sequence[str] = METHODS,
    diagnoses: Sequence[str] | None = None,
    impression: bool = True,
    n_steps: int = DEFAULT_STEPS,
) -> StudyExplanation:
    """Explain `study` with a Predictor's model: each diagnosis (default: all) and the impression, by each method.

    The maps are of what the model read: the study with its input scope applied (an
    out-of-scope series is never the image a map is drawn on).
    """
    model = predictor.model
    study = predictor.select(study)[0]
    batch = predictor.batch([study])
    with torch.no_grad():
        probs = predictor.probabilities(batch)[0]  # (K,)
    names = tuple(model.config.diagnoses)
    chosen = names if diagnoses is None else tuple(diagnoses)
    targets = [diagnosis_target(model, d) for d in chosen]
    text = ""
    if impression:
        target = impression_target(
            model, batch, prompt=predictor.impression_prompts(probs[None])[0]
        )  # as Predictor writes it
        targets.append(target)
        draft = model.impression_from(
            [model.decode(torch.tensor([list(c.ids)], dtype=torch.long))[0] for c in target.clauses]
        )
        text = predictor.ground(batch, probs[None], [draft])[
            0
        ].text  # the words shown are the grounded ones, as predict gives
    probability = {d: float(p) for d, p in zip(names, np.asarray(probs, dtype=np.float64))}
    present = tuple(m for m in MODALITIES if m in token_validity(model, batch))
    max_notes = model.config.preprocess.max_notes
    explanations = tuple(
        map_relevance(
            study,
            batch,
            r,
            None if r.target == IMPRESSION else probability[r.target],
            max_notes,
            predictor.task.channel_names,
        )
        for r in token_relevances(model, batch, targets, methods, n_steps=n_steps)
    )
    return StudyExplanation(study.study_id, probability, text, present, explanations, predictor.task.displays)
