"""Grad-CAM on the image encoder (MONAI's ``monai.visualize.GradCAM``), a second opinion beside attention.

The target layer is the encoder's last feature map after its ReLU, whose cells are exactly the
image tokens, so Grad-CAM and attention maps share one grid. GradCAM expects a classifier: a
small wrapper turns pixels into the one explained score, and a temporary forward hook routes
the encoder's activation through the wrapper's own ``tap`` (an ``nn.Identity``). MONAI's hooks
therefore sit on the wrapper, never on the model, and the model is not a registered child of
the wrapper, so MONAI's ``eval()`` and ``zero_grad()`` calls never reach it. Parameter gradients
left by the backward pass are put back as they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from monai.visualize import GradCAM
from torch import Tensor, nn

from medmm.explain.capture import Target, check_single, target_score
from medmm.explain.relevance import TokenRelevance, normalise, token_validity

TAP = "tap"


class ImageScore(nn.Module):
    """pixels (B, 1, H, W) -> the explained score (B, 1) of a one-case batch, with the image replaced."""

    def __init__(self, model, batch: dict, target: Target):
        super().__init__()
        self.tap = nn.Identity()
        self._model = (model,)  # a tuple, so the model is not registered as a child module
        self.batch = batch
        self.target = target

    def train(self, mode: bool = True) -> ImageScore:
        """Switch only the wrapper's own flag: explaining never changes the model's mode."""
        self.training = mode
        return self

    def forward(self, image: Tensor) -> Tensor:
        model = self._model[0]
        rows = image.shape[0]
        batch = {
            k: v.expand(rows, *v.shape[1:]).contiguous() if isinstance(v, Tensor) else v for k, v in self.batch.items()
        }
        batch["image"] = image.detach().requires_grad_(True)  # same values; makes the activations need a gradient
        handle = model.encoders["image"].act.register_forward_hook(lambda module, args, out: self.tap(out))
        try:
            return target_score(model, batch, self.target)[:, None]  # (B, 1)
        finally:
            handle.remove()


@contextmanager
def parameter_grads_kept(model: nn.Module) -> Iterator[None]:
    """Restore every parameter's ``.grad`` after the block (a backward pass must leave no trace)."""
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, g in saved:
            p.grad = g


def gradcam_relevance(model, batch: dict, target: Target) -> TokenRelevance | None:
    """Grad-CAM of `target` on the image token grid; None when the case has no image the model reads."""
    check_single(batch)
    valid = token_validity(model, batch)
    if "image" not in valid:
        return None
    wrapper = ImageScore(model, batch, target)
    cam = GradCAM(nn_module=wrapper, target_layers=TAP)
    with torch.enable_grad(), parameter_grads_kept(model):
        raw = cam.compute_map(batch["image"], class_idx=0)  # (1, 1, gh, gw), ReLU of the weighted activations
        score = float(cam.nn_module.score.detach())
    grid = raw[0, 0].detach().cpu().numpy()
    return TokenRelevance(target.name, "gradcam", {"image": normalise(grid, valid["image"])}, {}, score)
