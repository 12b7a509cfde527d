"""The text tokenizer: a BERT WordPiece vocabulary loaded from a local directory (never a hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _is_cased(vocab_file: Path) -> bool:
    # bert-base-cased holds capitalised word pieces ("The"); uncased vocabularies hold none.
    with open(vocab_file, encoding="utf-8") as f:
        return any(t[:1].isupper() and not t.startswith("[") for t in (line.strip() for line in f))


class Tokenizer:
    """WordPiece ids for prompts, as the reference: ``[CLS]`` + at most ``max_tokens`` ids + ``[SEP]``.

    Lower-casing follows ``tokenizer_config.json`` when it says, else the vocabulary (cased when it
    holds capitalised pieces).
    """

    def __init__(self, directory: str | os.PathLike, max_tokens: int = 61):
        from tokenizers.implementations import BertWordPieceTokenizer

        self.directory = Path(directory)
        vocab = self.directory / "vocab.txt"
        if not vocab.is_file():
            raise FileNotFoundError(f"{self.directory}: no vocab.txt (a BERT WordPiece vocabulary is needed)")
        config_file = self.directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        lower = config.get("do_lower_case")
        self.lower_case = (not _is_cased(vocab)) if lower is None else bool(lower)
        self._vocab_text = vocab.read_text(encoding="utf-8")  # kept: the source directory may go away
        self._tok = BertWordPieceTokenizer(str(vocab), lowercase=self.lower_case,
                                           strip_accents=config.get("strip_accents"))
        self.max_tokens = max_tokens
        self.cls_id = self._tok.token_to_id("[CLS]")
        self.sep_id = self._tok.token_to_id("[SEP]")
        self.pad_id = self._tok.token_to_id("[PAD]")
        self.vocab_size = self._tok.get_vocab_size()

    def ids(self, texts: list[str]) -> list[list[int]]:
        """``[CLS] ids[:max_tokens] [SEP]`` for each text (no padding)."""
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [[self.cls_id, *e.ids[: self.max_tokens], self.sep_id] for e in encoded]

    def batch(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest: int64 ids ``[B, L]`` and a bool mask ``[B, L]``."""
        length = max(len(i) for i in ids)
        out = np.full((len(ids), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=bool)
        for row, seq in enumerate(ids):
            out[row, : len(seq)] = seq
            mask[row, : len(seq)] = True
        return out, mask

    def save(self, directory: str | os.PathLike) -> None:
        """Write the vocabulary and the lower-casing decision (explicitly, so loading never guesses)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        (target / "vocab.txt").write_text(self._vocab_text, encoding="utf-8")
        (target / "tokenizer_config.json").write_text(json.dumps(
            {"do_lower_case": self.lower_case, "tokenizer_class": "BertTokenizer",
             "model_max_length": self.max_tokens + 2}, indent=2))
