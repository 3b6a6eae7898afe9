import torch
import torch.nn.functional as F

from medmm.fusion.xattn import GatedCrossAttentionBlock, MaskedCrossAttention

D, DC, H, T, K = 16, 12, 2, 5, 6


def tiny(gates: float = 0.0) -> GatedCrossAttentionBlock:
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(D, heads=H, ff_mult=2, dim_context=DC)
    with torch.no_grad():
        block.attn_gate.fill_(gates)
        block.ff_gate.fill_(gates)
    return block


def inputs():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, T, D, generator=g)
    context = torch.randn(3, K, DC, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return hidden, context, mask


def test_gates_start_at_zero_and_then_add_nothing():
    block = GatedCrossAttentionBlock(D, heads=H, dim_context=DC)
    assert block.attn_gate.item() == 0.0 and block.ff_gate.item() == 0.0
    hidden, context, mask = inputs()
    assert torch.equal(block(hidden, context, mask), hidden)


def test_nonzero_gates_change_rows_with_context_only():
    block = tiny(0.7)
    hidden, context, mask = inputs()
    out = block(hidden, context, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], hidden[1])  # fully masked context: exactly zero added
    assert (out[0] - hidden[0]).abs().max() > 1e-3
    assert (out[2] - hidden[2]).abs().max() > 1e-3


def test_output_equals_the_formula_with_reference_attention():
    block = tiny(0.7).eval()
    hidden, context, mask = inputs()
    out = block(hidden, context, mask)
    attn = block.attn
    with torch.no_grad():
        for row in (0, 2):
            valid = context[row][mask[row]]  # masked latents removed
            q = attn.to_q(attn.norm(hidden[row])).reshape(T, H, -1).transpose(0, 1)
            k, v = attn.to_kv(valid).chunk(2, -1)
            k = k.reshape(-1, H, k.shape[-1] // H).transpose(0, 1)
            v = v.reshape(-1, H, v.shape[-1] // H).transpose(0, 1)
            a = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(T, -1)
            x = hidden[row] + torch.tanh(torch.tensor(0.7)) * attn.to_out(a)
            expected = x + torch.tanh(torch.tensor(0.7)) * block.ff(x)
            torch.testing.assert_close(out[row], expected, rtol=1e-5, atol=1e-6)


def test_cached_keys_values_equal_recomputed_exactly():
    block = tiny(0.7)
    hidden, context, mask = inputs()
    kv = block.keys_values(context, mask)
    recomputed = block(hidden, context, mask)
    for step in range(3):  # new tokens one at a time, as in generation
        cached = block(hidden[:, step : step + 1], context, mask, kv=kv)
        assert torch.equal(cached, block(hidden[:, step : step + 1], context, mask))
    assert torch.equal(block(hidden, context, mask, kv=kv), recomputed)


def test_masked_latents_never_reach_the_output():
    block = tiny(0.7)
    hidden, context, mask = inputs()
    out = block(hidden, context, mask)
    changed = context.clone()
    changed[~mask] = float("nan")
    assert torch.equal(block(hidden, changed, mask), out)


def test_attention_probabilities_are_hookable_and_zero_where_masked():
    attn = MaskedCrossAttention(D, DC, heads=H)
    hidden, context, mask = inputs()
    captured = []
    attn.attn_probs.register_forward_hook(lambda mod, args, out: captured.append(out))
    attn(hidden, mask, attn.keys_values(context, mask))
    probs = captured[0]
    assert probs.shape == (3, H, T, K)
    assert not probs[1].any()  # no context: no attention at all
    torch.testing.assert_close(probs[[0, 2]].sum(-1), torch.ones(2, H, T))
    assert not probs[0][..., ~mask[0]].any()


def test_no_gradient_from_a_row_without_context():
    block = tiny(0.7)
    hidden, context, mask = inputs()
    context.requires_grad_(True)
    out = block(hidden, context, mask)
    out[1].sum().backward(retain_graph=True)
    assert context.grad is None or not context.grad.any()
    assert all(p.grad is None or not p.grad.any() for p in block.parameters())
    out[0].pow(2).sum().backward()
    assert not context.grad[0][~mask[0]].any() and context.grad[0][mask[0]].abs().sum() > 0
