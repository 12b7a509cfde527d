"""Prompts: ``"<en> <ase> house"`` = spoken-language tag, sign-language tag, then the gloss or text.

The tags are plain text: the BERT tokenizer splits ``<en>`` into ``<``, ``en``, ``>`` (the reference did
not add them to the vocabulary, so neither do we).
"""

from __future__ import annotations

import re

# ISO 639-3 codes of sign languages seen in SignCLIP's data, with English names (for sentence prompts).
SIGN_LANGUAGES: dict[str, str] = {
    "ase": "American Sign Language", "gsg": "German Sign Language", "bfi": "British Sign Language",
    "fsl": "French Sign Language", "sgg": "Swiss-German Sign Language", "ssr": "Swiss-French Sign Language",
    "slf": "Swiss-Italian Sign Language", "ise": "Italian Sign Language", "ssp": "Spanish Sign Language",
    "psr": "Portuguese Sign Language", "dse": "Dutch Sign Language", "vgt": "Flemish Sign Language",
    "dsl": "Danish Sign Language", "swl": "Swedish Sign Language", "nsl": "Norwegian Sign Language",
    "fse": "Finnish Sign Language", "icl": "Icelandic Sign Language", "pso": "Polish Sign Language",
    "cse": "Czech Sign Language", "svk": "Slovak Sign Language", "hsh": "Hungarian Sign Language",
    "rms": "Romanian Sign Language", "bqn": "Bulgarian Sign Language", "gss": "Greek Sign Language",
    "tsm": "Turkish Sign Language", "rsl": "Russian Sign Language", "ukl": "Ukrainian Sign Language",
    "lsl": "Latvian Sign Language", "lls": "Lithuanian Sign Language", "eso": "Estonian Sign Language",
    "csl": "Chinese Sign Language", "jsl": "Japanese Sign Language", "kvk": "Korean Sign Language",
    "ins": "Indian Sign Language", "bzs": "Brazilian Sign Language", "aed": "Argentine Sign Language",
    "mfs": "Mexican Sign Language", "csn": "Colombian Sign Language", "asf": "Australian Sign Language",
    "nzs": "New Zealand Sign Language", "sfs": "South African Sign Language", "isr": "Israeli Sign Language",
    "pks": "Pakistan Sign Language", "ils": "International Sign",
}

_SPOKEN = re.compile(r"^[a-z]{2,3}$")
_SIGNED = re.compile(r"^[a-z]{3}$")


class PromptError(ValueError):
    """A prompt that cannot be built (bad language code, empty text)."""


def check_codes(spoken: str, signed: str) -> None:
    """Raise ``PromptError`` unless ``spoken`` is ISO 639-1/-3 and ``signed`` is a 3-letter ISO 639-3 code."""
    if not isinstance(spoken, str) or not _SPOKEN.match(spoken):
        raise PromptError(f"spoken-language code {spoken!r}: expected 2-3 lower-case letters (ISO 639), e.g. 'en'")
    if not isinstance(signed, str) or not _SIGNED.match(signed):
        raise PromptError(f"sign-language code {signed!r}: expected 3 lower-case letters (ISO 639-3), e.g. 'ase'")


def build_prompt(text: str, signed: str, spoken: str = "en") -> str:
    """The E7.2 prompt ``"<spoken> <signed> text"``."""
    check_codes(spoken, signed)
    text = " ".join(str(text).split())
    if not text:
        raise PromptError("prompt text is empty")
    return f"<{spoken}> <{signed}> {text}"


def sentence_prompt(template: str, signed: str, **fields: str) -> str:
    """A sentence prompt such as ``"Fingerspell the letter {letter} in {language}."``.

    ``{language}`` is filled with the sign language's English name.
    """
    check_codes("en", signed)
    if signed not in SIGN_LANGUAGES:
        raise PromptError(f"sign-language code {signed!r}: no English name known for a sentence prompt")
    try:
        return template.format(language=SIGN_LANGUAGES[signed], **fields)
    except (KeyError, IndexError, ValueError) as e:
        raise PromptError(f"prompt template {template!r}: only the fields {{language}} and "
                          f"{', '.join('{' + f + '}' for f in fields)} can be filled ({type(e).__name__}: {e})") from None


def gloss_prompt(gloss: str, signed: str, spoken: str = "en", template: str | None = None) -> str:
    """A clip's prompt from its gloss: ``template`` (a :func:`sentence_prompt`) when given, else E7.2's.
    ``PromptError`` when the gloss is empty (a template would make a sentence that names no sign)."""
    if not str(gloss).strip():
        raise PromptError("the gloss is empty")
    return sentence_prompt(template, signed, gloss=str(gloss)) if template else build_prompt(gloss, signed, spoken)
