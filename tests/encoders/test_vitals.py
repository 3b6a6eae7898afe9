import numpy as np
import pytest
import torch

from medmm.codes import VITAL_NAMES
from medmm.encoders.vitals import VitalsEncoder, VitalsEncoderConfig
from medmm.errors import ConfigError

C = len(VITAL_NAMES)


def tiny() -> VitalsEncoder:
    torch.manual_seed(0)
    return VitalsEncoder(VitalsEncoderConfig(dim=16, depth=2, heads=2, max_steps=12))


def grid(batch: int = 3, steps: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, steps, C, generator=g)
    observed = torch.rand(batch, steps, C, generator=g) > 0.5
    return values, observed


def test_shapes_and_mask_are_observed_and_present_flattened_step_major():
    enc = tiny()
    values, observed = grid()
    present = torch.tensor([True, False, True])
    tokens, mask = enc(values, observed, present)
    assert tokens.shape == (3, 6 * C, 16)
    expected = observed.numpy() & present.numpy()[:, None, None]
    np.testing.assert_array_equal(mask.numpy(), expected.reshape(3, 6 * C))
    assert not tokens[~mask].any()


def test_token_maps_to_step_and_channel():
    enc = tiny()
    values = torch.zeros(1, 6, C)
    observed = torch.zeros(1, 6, C, dtype=torch.bool)
    observed[0, 4, 2] = True
    _, mask = enc(values, observed)
    (index,) = mask[0].nonzero()[:, 0].tolist()
    assert index == 4 * C + 2
    assert enc.token_step_channel(index, C) == (4, 2)
    assert enc.grid(6, C) == (6, C)


def test_unobserved_values_never_leak():
    enc = tiny().train()  # dropout is 0, so training mode is deterministic
    values, observed = grid()
    tokens, mask = enc(values, observed)
    changed = values.clone()
    changed[~observed] = torch.randn(int((~observed).sum())) * 1e3
    changed[0, ~observed[0]] = float("nan")
    other, other_mask = enc(changed, observed)
    assert torch.equal(mask, other_mask)
    assert torch.equal(tokens[mask], other[mask])  # bit-identical at observed positions
    assert torch.isfinite(other).all()


def test_observed_values_do_matter():
    enc = tiny().eval()
    values, observed = grid()
    tokens, mask = enc(values, observed)
    changed = values.clone()
    changed[observed] += 1.0
    other, _ = enc(changed, observed)
    assert (tokens[mask] - other[mask]).abs().max() > 1e-3


def test_time_embedding_counts_steps_before_the_study():
    enc = tiny().eval()
    values, observed = grid(batch=1, steps=6)
    observed[:, :2] = False  # the two oldest steps carry nothing
    long_tokens, long_mask = enc(values, observed)
    short_tokens, short_mask = enc(values[:, 2:], observed[:, 2:])  # the same last four hours
    assert torch.equal(long_mask[:, 2 * C :], short_mask)
    torch.testing.assert_close(long_tokens[:, 2 * C :], short_tokens, rtol=1e-5, atol=1e-6)


def test_row_with_nothing_observed_is_finite_zero_and_masked():
    enc = tiny()
    values, observed = grid()
    observed[1] = False
    tokens, mask = enc(values, observed)
    assert torch.isfinite(tokens).all()
    assert not mask[1].any() and not tokens[1].any()


def test_gradient_only_through_present_rows():
    enc = tiny().train()
    values, observed = grid()
    tokens, _ = enc(values, observed, torch.tensor([True, False, True]))
    tokens[1].sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in enc.parameters())
    tokens[0].pow(2).sum().backward()
    assert enc.value_in.weight.grad.abs().sum() > 0


def test_errors():
    enc = tiny()
    with pytest.raises(ConfigError, match="channels"):
        enc(torch.zeros(1, 4, C + 1), torch.ones(1, 4, C + 1, dtype=torch.bool))
    with pytest.raises(ConfigError, match="max_steps"):
        enc(torch.zeros(1, 13, C), torch.ones(1, 13, C, dtype=torch.bool))
    with pytest.raises(ConfigError, match="divisible"):
        VitalsEncoder(VitalsEncoderConfig(dim=10, heads=3))


def with_summaries() -> VitalsEncoder:
    torch.manual_seed(0)
    return VitalsEncoder(VitalsEncoderConfig(dim=16, depth=2, heads=2, max_steps=12, summary_tokens=True))


def test_channel_summaries_by_hand():
    from medmm.encoders.vitals import channel_summaries

    values, observed = grid(batch=2, steps=8, seed=3)
    observed[1, :, 0] = False  # a channel never observed: all zeros
    out = channel_summaries(values, observed).numpy()  # (B, C, F)
    for b in range(2):
        for c in range(C):
            seen = observed[b, :, c].numpy()
            if not seen.any():
                assert not out[b, c].any()
                continue
            x, steps = values[b, seen, c].numpy(), np.flatnonzero(seen)
            t = np.linspace(0, 1, 8)[steps]
            slope = np.polyfit(t, x, 1)[0] if len(x) > 1 else 0.0
            recent = seen & (np.arange(8) >= 6)  # the last quarter: steps 6 and 7
            r = values[b, recent, c].numpy()
            stats = [r.mean(), r.min(), r.max()] if r.size else [0.0, 0.0, 0.0]
            expected = [x.mean(), x.std(), x.min(), x.max(), x[-1], slope, seen.mean(), *stats]
            np.testing.assert_allclose(out[b, c], expected, rtol=1e-5, atol=1e-5)


def test_summary_tokens_follow_the_step_tokens_and_keep_the_mask_honest():
    enc = with_summaries().train()
    values, observed = grid()
    observed[2] = False  # a row with nothing observed
    tokens, mask = enc(values, observed)
    assert tokens.shape == (3, 6 * C + C, 16)
    np.testing.assert_array_equal(mask[:, 6 * C :].numpy(), observed.any(dim=1).numpy())  # one per observed channel
    assert not mask[2].any() and not tokens[2].any()
    changed = values.clone()
    changed[~observed] = (
        torch.randn(int((~observed).sum())) * 1e3
    )  # unobserved values reach no token, summaries included
    other, _ = enc(changed, observed)
    assert torch.equal(tokens[mask], other[mask])


def test_a_summary_tokens_relevance_is_spread_over_its_channels_steps():
    enc = with_summaries()
    observed = torch.zeros(4, C, dtype=torch.bool)
    observed[[0, 3], 1] = True
    observed[2, 5] = True
    relevance = torch.zeros(4 * C + C)
    relevance[2 * C + 5] = 0.25  # a step token
    relevance[4 * C + 1] = 0.5  # channel 1's summary: half to each of its two observed steps
    grid_ = enc.tokens_to_grid(relevance, observed)
    expected = torch.zeros(4, C)
    expected[2, 5], expected[0, 1], expected[3, 1] = 0.25, 0.25, 0.25
    torch.testing.assert_close(grid_, expected)
