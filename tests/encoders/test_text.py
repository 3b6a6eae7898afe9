import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from medmm.encoders.text import TextEncoder, TextEncoderConfig, load_note_tokenizer
from medmm.errors import ConfigError

B, M, L, V = 2, 3, 5, 40


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=V,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertModel(config).eval()


def batch():
    torch.manual_seed(1)
    ids = torch.randint(1, V, (B, M, L))
    lengths = np.array([[5, 3, 4], [2, 0, 0]])  # tokens per note; row 1 has one note
    attention = torch.from_numpy((np.arange(L)[None, None, :] < lengths[..., None]).astype(np.int64))
    ids = ids * attention
    present = torch.tensor([[True, True, False], [True, False, False]])
    return ids, attention, present


def test_shapes_and_mask_is_attention_and_present():
    ids, attention, present = batch()
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    tokens, mask = enc(ids, attention, present)
    assert enc.dim == 16
    assert tokens.shape == (B, M * L, 16) and mask.shape == (B, M * L)
    expected = (attention.numpy().astype(bool) & present.numpy()[..., None]).reshape(B, M * L)
    np.testing.assert_array_equal(mask.numpy(), expected)
    assert not tokens[~mask].any()


def test_tokens_are_the_encoders_own_outputs_per_note_and_position():
    ids, attention, present = batch()
    bert = tiny_bert()
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=bert)
    tokens, mask = enc(ids, attention, present)
    assert enc.grid(M, L) == (M, L)
    with torch.no_grad():
        for b, m in [(0, 0), (0, 1), (1, 0)]:
            direct = bert(input_ids=ids[b, m][None], attention_mask=attention[b, m][None]).last_hidden_state[0]
            for pos in range(L):
                index = m * L + pos  # token i -> note i // L, position i % L
                if attention[b, m, pos]:
                    torch.testing.assert_close(tokens[b, index], direct[pos], rtol=1e-5, atol=1e-6)


def test_absent_notes_never_reach_the_encoder():
    ids, attention, present = batch()
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    seen = []
    enc.backbone.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    enc(ids, attention, present)
    # present notes with at least one token: (0, 0), (0, 1), (1, 0)
    assert seen == [3]


def test_precomputed_embeddings_give_the_same_output():
    ids, attention, present = batch()
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    cached, cached_mask = enc.embed_notes(ids, attention)  # what a dataset cache would store
    assert cached.shape == (B, M, L, 16) and cached_mask.shape == (B, M, L)
    direct = enc(ids, attention, present)
    reused = enc(None, attention, present, embeddings=cached)
    assert torch.equal(direct[0], reused[0]) and torch.equal(direct[1], reused[1])


def test_frozen_encoder_stays_eval_and_has_no_gradients():
    ids, attention, present = batch()
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    enc.train()
    assert not enc.backbone.training
    assert not any(p.requires_grad for p in enc.parameters())
    tokens, _ = enc(ids, attention, present)
    assert not tokens.requires_grad


def test_trainable_encoder_gradient_only_through_present_notes():
    ids, attention, present = batch()
    enc = TextEncoder(TextEncoderConfig(frozen=False), backbone=tiny_bert())
    enc.train()
    assert enc.backbone.training
    tokens, mask = enc(ids, attention, present)
    # row 1's second and third notes are absent: their token slots carry no gradient path
    tokens[1, L:].sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in enc.parameters())
    tokens[1, :L].pow(2).sum().backward()
    assert enc.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_errors():
    enc = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    _, attention, present = batch()
    with pytest.raises(ConfigError, match="input_ids or embeddings"):
        enc(None, attention, present)
    with pytest.raises(ConfigError, match="embeddings shape"):
        enc(None, attention, present, embeddings=torch.zeros(B, M, L + 1, 16))


def test_unloadable_model_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no encoder could be loaded"):
        TextEncoder(TextEncoderConfig(model_path=str(tmp_path)))


@pytest.mark.slow
def test_default_minilm_loads_offline_and_gives_384_dim_tokens():
    from transformers import AutoModel

    from medmm.encoders.text import default_model_path

    tokenizer = load_note_tokenizer()
    enc = TextEncoder()
    notes = ["Productive cough and crackles at the right base.", "Denies fever."]
    enc_in = tokenizer(notes, max_length=16, truncation=True, padding="max_length", return_tensors="pt")
    ids = enc_in["input_ids"][None]  # (1, 2, 16): one study with two notes
    attention = enc_in["attention_mask"][None]
    tokens, mask = enc(ids, attention, torch.tensor([[True, True]]))
    assert enc.dim == 384 and tokens.shape == (1, 32, 384)
    assert mask.sum() == attention.sum()
    reference = AutoModel.from_pretrained(default_model_path()).eval()
    with torch.no_grad():
        direct = reference(**enc_in).last_hidden_state  # (2, 16, 384)
    valid = attention[0].bool()
    torch.testing.assert_close(tokens[0].reshape(2, 16, 384)[valid], direct[valid], rtol=1e-4, atol=1e-5)


def test_a_lexical_embedding_starts_as_the_plain_encoder_and_learns_words():
    ids, attention, present = batch()
    plain = TextEncoder(TextEncoderConfig(frozen=True), backbone=tiny_bert())
    lexical = TextEncoder(TextEncoderConfig(frozen=True, lexical_dim=4), backbone=tiny_bert())
    base, mask = plain(ids, attention, present)
    start, _ = lexical(ids, attention, present)
    assert torch.equal(base, start)  # zero-initialised output: nothing changes until trained
    trainable = {n for n, p in lexical.named_parameters() if p.requires_grad}
    assert trainable == {"lexical.weight", "lexical_out.weight", "lexical_out.bias"}  # the backbone stays frozen
    with torch.no_grad():
        lexical.lexical_out.weight.normal_()
    tokens, _ = lexical(ids, attention, present)
    by_hand = base + lexical.lexical_out(lexical.lexical(ids)).reshape(B, M * L, -1) * mask[..., None]
    torch.testing.assert_close(tokens, by_hand)
    assert not tokens[~mask].any()  # padding and absent notes stay zero
    cached, _ = lexical.embed_notes(ids, attention)
    torch.testing.assert_close(lexical(ids, attention, present, embeddings=cached)[0], tokens)
    tokens.sum().backward()
    read = mask.reshape(B, M, L)
    seen = set(ids[read].tolist())
    unseen = sorted(set(ids[~read].tolist()) - seen)  # ids only in padding or absent notes
    grad = lexical.lexical.weight.grad
    assert all(grad[i].abs().sum() > 0 for i in seen) and all(grad[i].abs().sum() == 0 for i in unseen) and unseen
    with pytest.raises(ConfigError, match="token ids"):
        lexical(None, attention, present, embeddings=cached)
