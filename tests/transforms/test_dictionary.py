import numpy as np
import torch
from transformers import BertTokenizerFast

from medmm.transforms.dictionary import VITAL_REFERENCE, NormalizeVitalsd, TokenizeNotesd, ToTorchd, WindowLeveld


def test_window_level_maps_window_to_unit_interval():
    image = np.array([[-1000.0, 0.0], [40.0, 2000.0]], dtype=np.float32)
    out = WindowLeveld(keys="image", window_key="w")({"image": image, "w": (40.0, 400.0)})
    # window [-160, 240]: -1000 -> 0 (clipped), 0 -> 160/400, 40 -> 0.5, 2000 -> 1 (clipped)
    np.testing.assert_allclose(out["image"], [[0.0, 0.4], [0.5, 1.0]], rtol=0, atol=1e-7)
    assert out["image"].dtype == np.float32


def test_normalize_vitals_zscores_and_masks_unobserved():
    channels = ("heart_rate", "spo2")
    values = np.array([[95.0, np.nan], [np.nan, 90.0]], dtype=np.float32)
    out = NormalizeVitalsd(keys="v", channels=channels, observed_key="obs")({"v": values})
    hr_mean, hr_std = VITAL_REFERENCE["heart_rate"]
    sp_mean, sp_std = VITAL_REFERENCE["spo2"]
    np.testing.assert_allclose(out["v"], [[(95 - hr_mean) / hr_std, 0.0], [0.0, (90 - sp_mean) / sp_std]], rtol=1e-6)
    assert out["obs"].tolist() == [[True, False], [False, True]]
    assert not np.isnan(out["v"]).any()


def _tiny_wordpiece(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "denies", "fever", "productive", "cough", "no", ","]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}), vocab


def test_tokenize_notes_pads_keeps_newest_and_offsets(tmp_path):
    tok, vocab = _tiny_wordpiece(tmp_path)
    notes = ["no cough", "denies fever", "productive cough, fever"]
    out = TokenizeNotesd(keys="notes", tokenizer=tok, max_notes=2, max_tokens=6)({"notes": notes})
    assert "notes" not in out
    assert out["notes_present"].tolist() == [True, True]
    # newest two notes, [CLS] ... [SEP] then padding
    ids = out["notes_ids"]
    assert ids[0].tolist() == [2, vocab.index("denies"), vocab.index("fever"), 3, 0, 0]
    assert ids[1].tolist() == [
        2,
        vocab.index("productive"),
        vocab.index("cough"),
        vocab.index(","),
        vocab.index("fever"),
        3,
    ]
    assert out["notes_attention"][0].tolist() == [1, 1, 1, 1, 0, 0]
    # offsets point back into the original text
    start, end = out["notes_offsets"][1, 2]
    assert notes[2][start:end] == "cough"


def test_tokenize_notes_empty_list_is_absent(tmp_path):
    tok, _ = _tiny_wordpiece(tmp_path)
    out = TokenizeNotesd(keys="notes", tokenizer=tok, max_notes=3, max_tokens=4)({"notes": []})
    assert out["notes_ids"].shape == (3, 4) and not out["notes_present"].any() and out["notes_attention"].sum() == 0


def test_to_torch_keeps_dtype():
    out = ToTorchd(keys=["a", "b"])({"a": np.array([True, False]), "b": np.arange(3, dtype=np.int64)})
    assert out["a"].dtype == torch.bool and out["b"].dtype == torch.int64
    assert out["b"].tolist() == [0, 1, 2]
