"""Image pretraining parts: targets from the planted masks, the loss and pooling written out by hand,
the pointing count, the frozen encoder, and the saved encoder's checks."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from medmm.encoders.image import ImageEncoder, ImageEncoderConfig
from medmm.errors import CheckpointError
from medmm.io.cohort import Cohort
from medmm.synth import SynthConfig, synthesize
from medmm.synth.diagnoses import DIAGNOSIS_NAMES
from medmm.train.image_pretrain import (
    ImagePretrainer,
    finding_logits,
    image_targets,
    load_image_encoder,
    mask_background,
    pointing_rate,
    pretrain_loss,
    save_image_encoder,
)

TINY = ImageEncoderConfig(dim=16, init_features=8, growth_rate=8, block_config=(1, 1))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    root = tmp_path_factory.mktemp("image-pretrain") / "cohort"
    synthesize(root, SynthConfig(patients=16, seed=5, image_size=64, workers=1), progress=False)
    return Cohort.open(root)


def labels_of(folder) -> torch.Tensor:
    truth = json.loads((folder / "truth.json").read_text())
    return torch.tensor([float(d in truth["labels"]) for d in DIAGNOSIS_NAMES])


def test_targets_are_the_masks_averaged_over_token_cells(cohort):
    grid = (8, 8)  # 64 px images: cells of 8 x 8 pixels
    checked = 0
    for entry in cohort.entries:
        truth = json.loads((entry.folder / "truth.json").read_text())
        drawn = {d for d, e in truth["evidence"].items() if e.get("image")}
        t = image_targets(entry.folder, labels_of(entry.folder), DIAGNOSIS_NAMES, grid)
        assert t.cover_known
        assert t.finding.tolist() == [float(d in drawn) for d in DIAGNOSIS_NAMES]
        with np.load(entry.folder / "truth-lesions.npz", allow_pickle=False) if drawn else _nothing() as masks:
            for k, name in enumerate(DIAGNOSIS_NAMES):
                if name in drawn:
                    key = truth["evidence"][name]["image"]["mask_key"]
                    mask = masks[key].astype(np.float64)
                    by_hand = mask.reshape(8, mask.shape[0] // 8, 8, mask.shape[1] // 8).mean(axis=(1, 3))
                    np.testing.assert_allclose(t.cover[k].numpy(), by_hand, atol=1e-6)
                    assert t.cover[k].sum() > 0
                    checked += 1
                else:
                    assert float(t.cover[k].abs().sum()) == 0.0
    assert checked >= 3  # some cases carry image evidence


class _nothing:
    def __enter__(self):
        return {}

    def __exit__(self, *exc):
        return False


def test_a_case_without_truth_takes_its_labels_and_no_cover(tmp_path):
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    t = image_targets(tmp_path, labels, DIAGNOSIS_NAMES, (4, 4))
    assert not t.cover_known
    assert torch.equal(t.finding, labels)
    assert t.cover.shape == (5, 4, 4) and float(t.cover.sum()) == 0.0


def _bce(logit: float, target: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_finding_logits_and_loss_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, dtype=torch.float64)  # (B, N, K): a 2 x 2 grid, 3 diagnoses
    finding = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    cover = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    known = torch.tensor([True, False])

    pooled = finding_logits(logits)
    for b in range(2):
        for k in range(3):
            values = logits[b, :, k].tolist()
            assert float(pooled[b, k]) == pytest.approx(math.log(sum(math.exp(v) for v in values) / 4), rel=1e-12)

    expected_finding = np.mean([_bce(float(pooled[b, k]), float(finding[b, k])) for b in range(2) for k in range(3)])
    expected_cover = np.mean(
        [_bce(float(logits[0, n, k]), float(cover[0, k].flatten()[n])) for n in range(4) for k in range(3)]
    )
    loss = pretrain_loss(logits, finding, cover, known, cover_weight=2.0)
    assert float(loss) == pytest.approx(expected_finding + 2.0 * expected_cover, rel=1e-10)
    none_known = pretrain_loss(logits, finding, cover, torch.tensor([False, False]))
    assert float(none_known) == pytest.approx(expected_finding, rel=1e-10)


def test_pointing_counts_images_with_a_finding_and_a_mask():
    logits = torch.zeros(2, 4, 2)  # (B, N, K)
    logits[0, 3, 0] = 5.0  # image 0, diagnosis 0: top token 3
    logits[1, 1, 0] = 5.0  # image 1, diagnosis 0: top token 1
    cover = torch.zeros(2, 2, 2, 2)
    cover[0, 0].view(-1)[3] = 0.5  # hit
    cover[1, 0].view(-1)[2] = 1.0  # miss (top token 1 is outside)
    cover[1, 1].view(-1)[0] = 1.0  # a mask, but no finding: not a trial
    finding = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert pointing_rate(logits, cover, finding) == (1, 2)


def test_background_masking_blanks_whole_cells_outside_every_lesion():
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, 1, 12, 12, generator=gen)  # a 3 x 3 grid of 4 x 4 pixel cells
    cover = torch.zeros(3, 2, 3, 3)  # (B, K, 3, 3)
    cover[0, 0, 0, 0] = 1.0  # image 0: lesions in cells 0 and 4
    cover[0, 1, 1, 1] = 0.25
    known = torch.tensor([True, False, True])  # image 1 has no masks: never blanked
    seen = set()
    for _ in range(50):
        out, blanked = mask_background(pixels, cover, known, rate=1.0, max_fraction=0.5, generator=gen)
        assert torch.equal(out[1], pixels[1])
        counted = 0
        for b in (0, 2):
            changed = []
            for cell in range(9):
                r, c = divmod(cell, 3)
                block, original = (
                    out[b, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4],
                    pixels[b, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4],
                )
                if not torch.equal(block, original):
                    assert torch.all(block == pixels[b].mean())  # the whole cell, at the image's own mean
                    changed.append(cell)
            assert 1 <= len(changed) <= math.ceil(0.5 * 9)
            if b == 0:
                assert not {0, 4} & set(changed)  # never a lesion's cell
                seen.update(changed)
            counted += len(changed)
        assert blanked == counted
    assert seen == {1, 2, 3, 5, 6, 7, 8}  # every background cell gets its turn
    untouched, none = mask_background(pixels, cover, known, rate=0.0, max_fraction=0.5, generator=gen)
    assert untouched is pixels and none == 0


def test_frozen_encoder_takes_no_gradient_and_keeps_its_statistics():
    torch.manual_seed(0)
    encoder = ImageEncoder(dataclasses.replace(TINY, frozen=True))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    pixels = torch.randn(3, 1, 32, 32, requires_grad=True)
    tokens, _ = encoder(pixels)
    tokens.sum().backward()
    assert pixels.grad is not None and float(pixels.grad.abs().sum()) > 0  # gradients still reach the input (Grad-CAM)
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm running statistics unchanged


def test_saved_encoder_loads_and_refuses_tampering_or_another_config(tmp_path):
    torch.manual_seed(1)
    trained = ImagePretrainer(TINY, len(DIAGNOSIS_NAMES))
    save_image_encoder(trained.encoder, tmp_path / "best", {"epoch": 3})
    fresh = ImageEncoder(dataclasses.replace(TINY, frozen=True))  # frozen may differ
    meta = load_image_encoder(fresh, tmp_path / "best")
    assert meta["epoch"] == 3
    assert all(torch.equal(a, b) for a, b in zip(trained.encoder.state_dict().values(), fresh.state_dict().values()))

    with pytest.raises(CheckpointError, match="dim differ"):
        load_image_encoder(ImageEncoder(dataclasses.replace(TINY, dim=24)), tmp_path / "best")
    weights = tmp_path / "best" / "image_encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_image_encoder(fresh, tmp_path / "best")
    with pytest.raises(CheckpointError, match="not a pretrained image encoder"):
        load_image_encoder(fresh, tmp_path)
