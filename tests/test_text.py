"""Prompts and the tokenizer."""

from __future__ import annotations

import json

import pytest

from signclip.model.factory import minilm_dir
from signclip.model.prompts import PromptError, build_prompt, sentence_prompt
from signclip.model.tokenizer import Tokenizer


def test_build_prompt():
    assert build_prompt("house", "ase") == "<en> <ase> house"
    assert build_prompt("  big   house ", "gsg", "de") == "<de> <gsg> big house"


@pytest.mark.parametrize("text, signed, spoken, message", [
    ("house", "ASE", "en", "sign-language code 'ASE'"),
    ("house", "as", "en", "sign-language code 'as'"),
    ("house", "ase", "english", "spoken-language code 'english'"),
    ("   ", "ase", "en", "empty"),
])
def test_build_prompt_refuses(text, signed, spoken, message):
    with pytest.raises(PromptError, match=message):
        build_prompt(text, signed, spoken)


def test_sentence_prompt():
    template = "Fingerspell the letter {letter} in {language}."
    assert sentence_prompt(template, "gsg", letter="A") == "Fingerspell the letter A in German Sign Language."
    with pytest.raises(PromptError, match="no English name"):
        sentence_prompt(template, "zzz", letter="A")


def test_tags_are_split_not_added_to_the_vocabulary():
    tok = Tokenizer(minilm_dir())
    ids = tok.ids(["<en> <ase> house"])[0]
    pieces = [tok._tok.id_to_token(i) for i in ids]
    assert pieces == ["[CLS]", "<", "en", ">", "<", "as", "##e", ">", "house", "[SEP]"]


def test_token_limit_is_61_plus_specials():
    tok = Tokenizer(minilm_dir())
    ids = tok.ids(["word " * 100, "short"])
    assert len(ids[0]) == 63 and ids[0][0] == tok.cls_id and ids[0][-1] == tok.sep_id
    tokens, mask = tok.batch(ids)
    assert tokens.shape == (2, 63) and mask[1].sum() == 3 and tokens[1, 3] == tok.pad_id


def _vocab(tmp_path, words):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return tmp_path


def test_casing_follows_the_vocabulary(tmp_path):
    cased = Tokenizer(_vocab(tmp_path, ["House", "house"]))
    assert not cased.lower_case
    assert cased.ids(["House"])[0][1] == 5  # "House" kept, not lower-cased


def test_casing_follows_tokenizer_config(tmp_path):
    _vocab(tmp_path, ["House", "house"])
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tok = Tokenizer(tmp_path)
    assert tok.lower_case and tok.ids(["House"])[0][1] == 6


def test_missing_vocabulary_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        Tokenizer(tmp_path)
