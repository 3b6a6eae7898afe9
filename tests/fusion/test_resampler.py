import pytest
import torch
import torch.nn.functional as F

from medmm.errors import ConfigError
from medmm.fusion.resampler import PerceiverAttention, PerceiverResampler

D_IN, D, K, H = 12, 16, 4, 2


def tiny(depth: int = 2) -> PerceiverResampler:
    torch.manual_seed(0)
    return PerceiverResampler(D_IN, D, num_latents=K, depth=depth, heads=H)


def inputs():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 7, D_IN, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return tokens, mask


def test_shapes_and_latent_mask():
    tokens, mask = inputs()
    latents, latent_mask = tiny()(tokens, mask)
    assert latents.shape == (3, K, D)
    assert latent_mask.tolist() == [[True] * K, [False] * K, [True] * K]


def test_row_without_tokens_gives_finite_zero_latents():
    tokens, mask = inputs()
    latents, _ = tiny()(tokens, mask)
    assert torch.isfinite(latents).all()
    assert not latents[1].any()


def test_masking_equals_removing_the_masked_tokens():
    res = tiny().eval()
    tokens, mask = inputs()
    latents, _ = res(tokens, mask)
    for row in (0, 2):
        kept = tokens[row][mask[row]][None]  # (1, n_valid, D_IN): masked tokens physically removed
        alone, _ = res(kept)
        torch.testing.assert_close(latents[row], alone[0], rtol=1e-5, atol=1e-6)


def test_masked_token_values_never_reach_the_latents():
    res = tiny()
    tokens, mask = inputs()
    latents, _ = res(tokens, mask)
    changed = tokens.clone()
    changed[~mask] = float("nan")
    other, _ = res(changed, mask)
    assert torch.equal(latents, other)


def test_modality_embedding_is_added_to_every_latent():
    res = tiny().eval()
    tokens, mask = inputs()
    before, _ = res(tokens, mask)
    with torch.no_grad():
        res.modality_embedding.add_(1.5)
    after, _ = res(tokens, mask)
    torch.testing.assert_close(after[0] - before[0], torch.full((K, D), 1.5), rtol=0, atol=1e-5)
    assert not after[1].any()  # an absent row stays zero


def test_attention_matches_reference_and_probabilities_are_hookable():
    torch.manual_seed(0)
    attn = PerceiverAttention(D, heads=H).eval()
    x = torch.randn(2, 5, D)
    lat = torch.randn(2, K, D)
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    captured = []
    attn.attn_probs.register_forward_hook(lambda mod, args, out: captured.append(out))
    out = attn(x, lat, mask)
    probs = captured[0]
    assert probs.shape == (2, H, K, 5 + K)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, H, K))
    assert not probs[..., :5][~mask[:, None, None, :].expand(2, H, K, 5)].any()
    # independent reference: torch's fused attention with a boolean mask
    with torch.no_grad():
        xn, ln = attn.norm_tokens(x), attn.norm_latents(lat)
        q = attn.to_q(ln).reshape(2, K, H, -1).transpose(1, 2)
        k, v = attn.to_kv(torch.cat([xn, ln], 1)).chunk(2, -1)
        k = k.reshape(2, 5 + K, H, -1).transpose(1, 2)
        v = v.reshape(2, 5 + K, H, -1).transpose(1, 2)
        keep = torch.cat([mask, torch.ones(2, K, dtype=torch.bool)], 1)[:, None, None, :]
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        ref = attn.to_out(ref.transpose(1, 2).reshape(2, K, -1))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_gradient_reaches_only_valid_tokens():
    res = tiny()
    tokens, mask = inputs()
    tokens.requires_grad_(True)
    latents, _ = res(tokens, mask)
    latents.pow(2).sum().backward()
    assert not tokens.grad[~mask].any()
    assert tokens.grad[mask].abs().sum() > 0


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match="divisible"):
        PerceiverResampler(D_IN, 10, heads=3)
