"""Gloss clean-up rules, as the original SignCLIP applied them before building prompts (``preprocess_gloss``).

Datasets number variants of one sign (ASL Citizen ``HOUSE2``, Sem-Lex ``eat_1``); cleaning merges them into
one gloss, so they share a prompt and a class. Whitespace is always normalised first (Sem-Lex lists both
``'30_minute '`` and ``'30_minute'``), which the original did not do.
"""

from __future__ import annotations

import re
import string

from signclip.datasets.common import normalize_gloss

_SEM_LEX_VARIANT = re.compile(r"_\d+$")


def clean_asl_citizen(gloss: str) -> str:
    """Lower-case and drop trailing digits: ``"HOUSE2"`` -> ``"house"``."""
    return normalize_gloss(normalize_gloss(gloss).lower().rstrip(string.digits))


def clean_sem_lex(gloss: str) -> str:
    """Drop a trailing ``_<digits>`` variant number, then underscores become spaces: ``"oh_i_see_2"`` ->
    ``"oh i see"``."""
    return normalize_gloss(_SEM_LEX_VARIANT.sub("", normalize_gloss(gloss)).replace("_", " "))
