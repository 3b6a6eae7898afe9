"""Grad-CAM through MONAI against Grad-CAM computed by hand; the model keeps no trace of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmm.explain.capture import diagnosis_logits, diagnosis_target, impression_target
from medmm.explain.gradcam import gradcam_relevance
from tests.explain.conftest import make_study


def _manual_gradcam(model, batch, index: int) -> np.ndarray:
    kept = {}
    handle = model.encoders["image"].act.register_forward_hook(lambda m, i, o: kept.setdefault("a", o))
    try:
        with torch.enable_grad():
            image = batch["image"].clone().requires_grad_(True)
            score = diagnosis_logits(model, {**batch, "image": image})[0, index]
            (grad,) = torch.autograd.grad(score, kept["a"])
    finally:
        handle.remove()
    acts = kept["a"][0].detach()  # (F, gh, gw)
    weights = grad[0].mean(dim=(1, 2))  # (F,) Selvaraju et al.: spatial mean of the gradient
    cam = torch.relu((weights[:, None, None] * acts).sum(0)).numpy()
    return cam / cam.sum() if cam.sum() > 0 else np.full(cam.shape, 1 / cam.size)


@pytest.mark.parametrize("name", ["pneumonia", "sepsis"])
def test_gradcam_matches_the_definition(model, batch, name):
    target = diagnosis_target(model, name)
    got = gradcam_relevance(model, batch, target)
    assert got.method == "gradcam" and set(got.maps) == {"image"} and got.share == {}
    assert got.maps["image"].shape == (4, 4) and got.maps["image"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(got.maps["image"], _manual_gradcam(model, batch, target.index), rtol=1e-5, atol=1e-8)


def test_gradcam_leaves_the_model_as_it_was(model, batch):
    hooks = [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()]
    with torch.no_grad():
        before = diagnosis_logits(model, batch)
    gradcam_relevance(model, batch, impression_target(model, batch, max_new_tokens=3))
    assert [len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()] == hooks
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    with torch.no_grad():
        assert torch.equal(diagnosis_logits(model, batch), before)


def test_no_image_no_gradcam(model, predictor):
    batch = predictor.batch([make_study(image=False)])
    assert gradcam_relevance(model, batch, diagnosis_target(model, "pneumonia")) is None
