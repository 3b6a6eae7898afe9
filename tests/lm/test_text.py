"""Prompt and target token ids: plain for a tokenizer without a chat template, framed as a chat turn otherwise."""

from __future__ import annotations

import pytest

from medmm.errors import ConfigError
from medmm.lm.prompts import IMPRESSION_PROMPT, guided_prompt
from medmm.lm.text import CHAT_SYSTEM, chat_frame, lm_inputs, prompt_token_ids, split_prompt, target_token_ids
from medmm.lm.tokenizer import BOS_ID, EOS_ID, build_tokenizer
from tests.gguf_files import CHAT_TEMPLATE, bpe_tokenizer, fast_tokenizer

GUIDED = guided_prompt(["pneumonia"])


@pytest.fixture(scope="module")
def chat_tok():
    tok = fast_tokenizer(bpe_tokenizer())
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_a_tokenizer_without_a_template_reads_bos_and_the_prompt():
    tok = build_tokenizer()
    assert chat_frame(tok) is None
    assert prompt_token_ids(tok, "Impression:", None) == [BOS_ID] + tok.encode("Impression:", add_special_tokens=False)
    assert target_token_ids(tok, "pneumonia.", None) == tok.encode(" pneumonia.", add_special_tokens=False) + [EOS_ID]
    lm = lm_inputs(
        tok,
        [GUIDED, "Question: fever? Answer:"],
        ["pneumonia.", None],
        pool_prefixes=[IMPRESSION_PROMPT, "Question: fever? Answer:"],
    )
    prefix = [BOS_ID] + tok.encode(IMPRESSION_PROMPT, add_special_tokens=False)
    assert lm.pool_index.tolist()[0] == len(prefix) - 1


def test_the_chat_frame_is_the_template_around_the_user_turn(chat_tok):
    head, tail = chat_frame(chat_tok)
    assert head == f"<|im_start|>system\n{CHAT_SYSTEM}<|im_end|>\n<|im_start|>user\n"
    assert tail == "<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_that_refuses_a_system_role_gets_the_user_turn_alone(chat_tok):
    tok = fast_tokenizer(bpe_tokenizer())
    tok.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}" + CHAT_TEMPLATE
    )
    assert chat_frame(tok) == ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
    tok.chat_template = "{{ 'no messages here' }}"
    with pytest.raises(ConfigError, match="chat template"):
        chat_frame(tok)


def test_a_guide_opens_the_reply_so_the_head_reads_the_same_position(chat_tok):
    frame = chat_frame(chat_tok)
    head, tail = frame
    assert split_prompt(GUIDED) == (IMPRESSION_PROMPT, GUIDED[len(IMPRESSION_PROMPT) :].strip())
    assert split_prompt("Question: fever? Answer:") == ("Question: fever? Answer:", "")
    enc = lambda text: chat_tok.encode(text, add_special_tokens=False)  # noqa: E731
    plain = enc(head + IMPRESSION_PROMPT + tail)
    guided = enc(head + IMPRESSION_PROMPT + tail + GUIDED[len(IMPRESSION_PROMPT) :].strip())
    assert prompt_token_ids(chat_tok, IMPRESSION_PROMPT, frame) == plain
    assert prompt_token_ids(chat_tok, GUIDED, frame) == guided and guided[: len(plain)] == plain
    # a reply after a guide continues it with a space; a whole reply starts at the turn
    assert target_token_ids(chat_tok, "pneumonia.", frame, GUIDED) == enc(" pneumonia.") + [chat_tok.eos_token_id]
    assert target_token_ids(chat_tok, "37.2 C.", frame, "Question: temperature? Answer:") == enc("37.2 C.") + [
        chat_tok.eos_token_id
    ]

    lm = lm_inputs(
        chat_tok,
        [GUIDED, IMPRESSION_PROMPT, "Question: temperature? Answer:"],
        ["pneumonia.", "pneumonia.", "37.2 C."],
        max_length=512,
        pool_prefixes=[IMPRESSION_PROMPT, IMPRESSION_PROMPT, "Question: temperature? Answer:"],
    )
    assert lm.pool_index.tolist()[:2] == [len(plain) - 1, len(plain) - 1]
    question = enc(head + "Question: temperature? Answer:" + tail)
    assert lm.pool_index.tolist()[2] == len(question) - 1
    row = lm.input_ids[2, : int(lm.attention_mask[2].sum())].tolist()
    assert row == question + enc("37.2 C.") + [chat_tok.eos_token_id]
    labelled = [t for t in lm.labels[2].tolist() if t != -100]
    assert labelled == enc("37.2 C.") + [chat_tok.eos_token_id]  # the frame and question are never targets
