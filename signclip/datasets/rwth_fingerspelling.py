"""RWTH German Fingerspelling Database (DGS): 35 gestures, 20 signers, two sessions, two cameras.

Layout (the original SignCLIP's ``RWTHFSMetaProcessor`` and its ``data/rwthfs`` lists; the database's page
www-i6.informatik.rwth-aachen.de/aslr/fingerspelling.php)::

    ROOT/**/<signer>_<gesture>_<session>_<camera>.pose   e.g. 1_1_1_cam2.pose (or --poses DIR); the ids are
                                                         the stems of the database's .mpg videos
    ROOT/gesture_ids.txt                  optional: " 1 = A" ... "30 = SCH", "31 = One" ... "35 = Five";
                                          without it the database's 35 gestures in that order are used
    ROOT/{train,val,test}.txt             optional split lists (video ids), e.g. the original's
                                          data/rwthfs lists; also looked for in ROOT/splits

Gestures: A-Z, the umlauts as AE/OE/UE, SCH and the numbers One-Five, named as the original's
gesture_ids.txt names them, so the prompts match the released fingerspelling model:
``"Fingerspell the letter A in German Sign Language."``. ``cam1`` (a webcam that sees only the hands)
is left out by default, as the original did for poses: ``cameras=("cam1", "cam2")`` keeps both.
Without split lists all video ids found are split at random as the original did (sorted ids, seed 3407,
10 % validation, 10 % test, before the camera filter).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pandas as pd

from signclip.datasets.common import (
    DatasetError,
    FileIndex,
    as_list,
    default_poses_dir,
    finalize,
    find_split_lists,
    locate_by_stem,
    random_split,
    read_split_lists,
    read_text,
)
from signclip.io import storage
from signclip.model.prompts import PromptError, sentence_prompt

log = logging.getLogger(__name__)

NAME = "rwth_fingerspelling"
PROMPT = "Fingerspell the letter {letter} in {language}."
SIGN_LANGUAGE = "gsg"
# The database's 35 gestures in its numbering (1-based): gesture_ids.txt of the original SignCLIP.
GESTURES = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ("AE", "OE", "UE", "SCH", "One", "Two", "Three", "Four", "Five")
VIDEO_ID = re.compile(r"^(\d+)_(\d+)_(\d+)_(cam\d+)$")


def read_gesture_ids(path: str) -> dict[int, str]:
    """``{gesture number: name}`` from a ``N = NAME`` file."""
    gestures = {}
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        number, sep, name = line.partition("=")
        if not sep or not number.strip().isdigit() or not name.strip():
            raise DatasetError(f"{path}: line {line_no}: expected 'N = NAME', got {line!r}")
        gestures[int(number)] = name.strip()
    return gestures


def rwth_fingerspelling(root: str, *, poses_dir: str | None = None, gesture_ids: str | None = None,
                        splits_dir: str | None = None, cameras: Sequence[str] | None = ("cam2",),
                        val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 3407) -> pd.DataFrame:
    """RWTH fingerspelling clips as manifest rows (gloss = the gesture's name; sentence prompts).

    Extra columns: ``gesture_id`` (1-based, as published; ``class_id`` is ``gesture_id - 1``),
    ``session``, ``camera``.
    """
    ids_file = gesture_ids or storage.join(root, "gesture_ids.txt")
    if storage.exists(ids_file):
        gestures = read_gesture_ids(ids_file)
    elif gesture_ids:
        raise DatasetError(f"gesture id file {gesture_ids} does not exist")
    else:
        gestures = {i + 1: name for i, name in enumerate(GESTURES)}
    index = FileIndex(default_poses_dir(root, poses_dir, "poses"))
    lists_dir = splits_dir or find_split_lists(root, storage.join(root, "splits"))
    if lists_dir:
        assignment = read_split_lists(lists_dir)
        video_ids = sorted(assignment)
    else:
        video_ids = sorted(s for s in index.stems() if VIDEO_ID.match(s))
        if not video_ids:
            raise DatasetError(f"{index.folder}: no pose files named <signer>_<gesture>_<session>_<camera>.pose")
        assignment = dict(zip(video_ids, random_split(len(video_ids), val_fraction, test_fraction, seed)))
    malformed = [v for v in video_ids if not VIDEO_ID.match(v)]
    if malformed:
        log.warning("%s: %d video id(s) not of the form <signer>_<gesture>_<session>_<camera> ignored (e.g. %s)",
                    NAME, len(malformed), ", ".join(malformed[:5]))
    keep = set(as_list(cameras))
    rows = []
    for video_id in video_ids:
        match = VIDEO_ID.match(video_id)
        if not match:
            continue
        signer, gesture, session, camera = match.groups()
        if keep and camera not in keep:
            continue
        if int(gesture) not in gestures:
            raise DatasetError(f"{NAME}: video {video_id}: gesture {gesture} is not in the gesture list")
        rows.append({"id": video_id, "gloss": gestures[int(gesture)], "split": assignment[video_id],
                     "signer": signer, "gesture_id": int(gesture), "session": int(session), "camera": camera})
    if not rows:
        raise DatasetError(f"{NAME}: no videos from camera(s) {', '.join(sorted(keep))}")
    meta = pd.DataFrame(rows)
    meta["pose"], meta["missing"] = locate_by_stem(index, meta["id"])
    meta["sign_language"] = SIGN_LANGUAGE
    meta["spoken_language"] = "en"
    known = {gestures[n]: n - 1 for n in sorted(gestures, reverse=True)}

    def prompts(df: pd.DataFrame) -> list[str]:
        try:
            return [sentence_prompt(PROMPT, SIGN_LANGUAGE, letter=g) for g in df["gloss"]]
        except PromptError as e:
            raise DatasetError(f"{NAME}: {e}") from e

    return finalize(meta, NAME, known_classes=known, prompt=prompts)
