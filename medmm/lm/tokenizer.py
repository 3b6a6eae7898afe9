"""The embedded backbone's tokenizer: a byte-level BPE trained in-process on a shipped clinical corpus.

Training takes a fraction of a second and is deterministic, so the tokenizer needs no
download and no stored vocabulary: every build from the same corpus gives the same ids.
Byte-level means any text encodes (there is no unknown token in practice) and decodes back
to exactly the same string.
"""

from __future__ import annotations

from importlib import resources

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from medmm.errors import ConfigError

CORPUS_FILE = "clinical_corpus.txt"  # inside the medmm.assets package
VOCAB_SIZE = 2560  # a multiple of 64 keeps the embedding matrix friendly to matmul kernels
MAX_LENGTH = 512

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # trained first, so ids 0..3
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def corpus_lines() -> list[str]:
    """The non-empty lines of the clinical corpus that ships in medmm/assets."""
    source = resources.files("medmm.assets").joinpath(CORPUS_FILE)
    try:
        text = source.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(
            "the tokenizer corpus is missing from the installed package (expected package data "
            "medmm/assets/clinical_corpus.txt)",
            path=CORPUS_FILE,
        ) from exc
    return [line for line in text.splitlines() if line.strip()]


def _train_bpe(lines: list[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with digits split one by one (numbers read as digit sequences)."""
    tok = Tokenizer(models.BPE())
    # Digits first, one token each: vital-sign values then share the ten digit embeddings
    # instead of learning an id per number seen in the corpus.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    # Plain format, no chat template: "<s> text"; the caller appends "</s>" to training targets.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    return tok


def build_tokenizer(max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """The embedded tokenizer, trained on the shipped corpus; identical ids on every build."""
    tok = _train_bpe(corpus_lines(), VOCAB_SIZE)
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
        raise ConfigError(f"special tokens got ids {ids}, expected {[PAD_ID, BOS_ID, EOS_ID, UNK_ID]}")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,  # decode must give back the exact text
    )
