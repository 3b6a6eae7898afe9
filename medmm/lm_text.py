"""How prompts and targets become token ids for any backbone: plain text, or the tokenizer's chat template.

A tokenizer without a chat template (the embedded one) gets BOS (when it has one) + the prompt,
and a target is " " + the target text + EOS. An instruction-tuned LM (a tokenizer with a chat
template, e.g. SmolLM2's from its GGUF file) gets each prompt as the user's turn of a chat, after
a system message that says what medmm is, with the assistant's turn opened; its target is the
assistant's reply ended by EOS (the template's end of turn). Training rows (medmm.data.lm_inputs)
and generation (MedMM.prompt_ids) both go through `prompt_token_ids`, so the model writes in the
frame it learnt in.
"""

from __future__ import annotations

from jinja2 import TemplateError

from medmm.errors import ConfigError
from medmm.prompts import IMPRESSION_PROMPT

# short: every training row and every prompt carries it
CHAT_SYSTEM = "You are medmm, a research tool (not a medical device), reading one patient's data."
_SLOT = "<<medmm-user-turn>>"


def chat_frame(tokenizer) -> tuple[str, str] | None:
    """(head, tail): the text before and after the user's message in the tokenizer's chat template
    (CHAT_SYSTEM as the system message where the template takes one, the assistant's turn opened
    after); None when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    user = {"role": "user", "content": _SLOT}
    for messages in ([{"role": "system", "content": CHAT_SYSTEM}, user], [user]):
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError:  # e.g. a template that refuses a system role
            continue
        if isinstance(text, str) and text.count(_SLOT) == 1:
            head, tail = text.split(_SLOT)
            return head, tail
    raise ConfigError("the tokenizer's chat template does not render one user message", where="chat template")


def split_prompt(prompt: str) -> tuple[str, str]:
    """(user turn, start of the reply) of a prompt in a chat: an impression prompt with a guide
    ("Impression: [suspected: ...]") asks "Impression:" and the guide opens the reply, so that the
    diagnosis head reads the same position (the end of the framed "Impression:") with and without a
    guide; any other prompt is all user turn."""
    if prompt.startswith(IMPRESSION_PROMPT) and prompt != IMPRESSION_PROMPT:
        return IMPRESSION_PROMPT, prompt[len(IMPRESSION_PROMPT) :].lstrip()
    return prompt, ""


def prompt_token_ids(tokenizer, prompt: str, frame: tuple[str, str] | None) -> list[int]:
    """Token ids the LM reads `prompt` as; `frame` from chat_frame(tokenizer) (None: plain, BOS first)."""
    if frame is None:
        bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        return bos + tokenizer.encode(prompt, add_special_tokens=False)
    head, tail = frame
    user, reply = split_prompt(prompt)
    return tokenizer.encode(head + user + tail + reply, add_special_tokens=False)


def target_token_ids(tokenizer, target: str, frame: tuple[str, str] | None, prompt: str = "") -> list[int]:
    """Token ids of a target after `prompt`: " " + target + EOS; in a chat the reply (continuing the
    reply's start the prompt opens, if any) + EOS, the template's end of turn."""
    starts_reply = frame is None or bool(split_prompt(prompt)[1])
    text = " " + target if starts_reply else target
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
