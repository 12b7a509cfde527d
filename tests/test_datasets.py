"""Dataset adapters on small copies of each published layout, Google's parquet converter on real poses, and
``signclip manifest`` end to end.

Every layout is written into ``tmp_path`` as the dataset publishes it, with its quirks (clips listed whose
file is missing, variant glosses, repeated ids, frame ranges); pose files are links to the real sample
poses in the shared data folder (never copied into the repository).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody

from signclip.datasets import ADAPTERS, MANIFEST_COLUMNS, DatasetError, adapter, load, missing_files, present
from signclip.datasets.common import random_split
from signclip.datasets.glosses import clean_asl_citizen, clean_sem_lex
from signclip.jobs import manifest as manifest_job
from signclip.pose.features import pose_features
from signclip.pose.google_parquet import (
    NOMINAL_FPS,
    NOMINAL_HEIGHT,
    NOMINAL_WIDTH,
    GoogleParquetError,
    google_parquet_to_pose,
)
from signclip.pose.reader import read_pose
from signclip.training.pairs import read_pairs

HOUSE, SAD = "house-colin-1.pose", "sad-colin.pose"
COMPONENTS = ("POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")
# Google's order of landmark types inside a frame, and the pose-format component each comes from
GOOGLE_TYPES = (("face", "FACE_LANDMARKS"), ("left_hand", "LEFT_HAND_LANDMARKS"), ("pose", "POSE_LANDMARKS"),
                ("right_hand", "RIGHT_HAND_LANDMARKS"))


def link(real: Path, target: Path) -> Path:
    """A link at ``target`` to a real pose file (the file itself stays in the shared data folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(real, target)
    return target


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_id(df: pd.DataFrame) -> dict[str, dict]:
    return {row["id"]: row for row in df.to_dict("records")}


def check_columns(df: pd.DataFrame) -> None:
    assert tuple(df.columns[: len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert df["id"].is_unique
    assert set(df["split"]) <= {"train", "val", "test"}
    assert df["class_id"].dtype == np.int64
    # one class per gloss, one gloss per class
    assert (df.groupby("gloss")["class_id"].nunique() == 1).all()
    assert (df.groupby("class_id")["gloss"].nunique() == 1).all()


# ---------------------------------------------------------------- shared pieces


def test_registry_and_common_signature():
    assert set(ADAPTERS) == {"spreadthesign", "asl_citizen", "sem_lex", "wlasl", "rwth_fingerspelling",
                             "asl_signs"}
    assert adapter("ASL-Citizen") is ADAPTERS["asl_citizen"]
    with pytest.raises(DatasetError, match="unknown dataset 'how2sign'"):
        adapter("how2sign")


def test_random_split_reproduces_the_original_split_scripts():
    # the original: random.seed(3407); random.shuffle(ids); val = first 10 %, test = next 10 %, train = rest
    ids = [f"{s}_{g}_1_cam2" for s in range(1, 21) for g in range(1, 36)]
    random.seed(3407)
    shuffled = list(ids)
    random.shuffle(shuffled)
    n = len(ids)
    expected = {i: "val" for i in shuffled[: int(n * 0.1)]}
    expected.update({i: "test" for i in shuffled[int(n * 0.1): int(n * 0.1) * 2]})
    labels = random_split(n, 0.1, 0.1, 3407)
    assert {i: s for i, s in zip(ids, labels) if s != "train"} == expected
    assert labels.count("train") == n - 2 * int(n * 0.1)
    with pytest.raises(DatasetError, match="fractions"):
        random_split(10, 0.6, 0.5, 0)


def test_gloss_clean_up_rules():
    assert clean_asl_citizen("HOUSE2") == "house"
    assert clean_asl_citizen("THINKCHIN ") == "thinkchin"
    assert clean_asl_citizen("9OCLOCK") == "9oclock"
    assert clean_sem_lex("eat_1") == "eat"
    assert clean_sem_lex("oh_i_see") == "oh i see"
    assert clean_sem_lex("30_minute ") == "30 minute"
    assert clean_sem_lex("last year") == "last year"


# ---------------------------------------------------------------- Spreadthesign


def spreadthesign_layout(root: Path, poses_dir: Path, split_lists: bool = True) -> Path:
    write(root / "SpreadTheSign.csv",
          "pose,videoLanguage,language,text\n"
          "1001.pose,ase,en,house\n"        # row 0
          "1002.pose,ase,en,sad\n"          # row 1
          "1003.pose,fsl,en,house\n"        # row 2: listed, but its pose was never extracted
          "1004.pose,gsg,de,Haus\n"         # row 3: German text, left out by default
          "sub/1005.pose,ase,en, sad \n")   # row 4: a pose in a subfolder, gloss with stray spaces
    link(poses_dir / HOUSE, root / "poses" / "1001.pose")
    link(poses_dir / SAD, root / "poses" / "1002.pose")
    link(poses_dir / HOUSE, root / "poses" / "1004.pose")
    link(poses_dir / SAD, root / "poses" / "sub" / "1005.pose")
    if split_lists:
        write(root / "splits" / "train.txt", "0\n2\n3\n")
        write(root / "splits" / "val.txt", "4\n")
        write(root / "splits" / "test.txt", "1\n")
    return root


def test_spreadthesign(tmp_path, poses_dir):
    root = spreadthesign_layout(tmp_path / "sts", poses_dir)
    df = load("spreadthesign", str(root))
    check_columns(df)
    rows = by_id(df)
    assert set(rows) == {"1001", "1002", "1003", "sub/1005"}  # the German row is filtered out
    assert rows["1001"]["text"] == "<en> <ase> house" and rows["1001"]["split"] == "train"
    assert rows["1003"]["text"] == "<en> <fsl> house" and rows["1003"]["missing"]
    assert rows["1003"]["class_id"] == rows["1001"]["class_id"]  # one class per gloss across languages
    assert rows["sub/1005"]["gloss"] == "sad" and rows["sub/1005"]["split"] == "val"
    assert rows["sub/1005"]["pose"] == str(root / "poses" / "sub" / "1005.pose")
    assert rows["1002"]["split"] == "test" and rows["1002"]["row"] == 1
    assert missing_files(df)["id"].tolist() == ["1003"]
    assert len(present(df)) == 3
    # every language, and a random split (no lists) that is the same on every run
    everything = load("spreadthesign", str(spreadthesign_layout(tmp_path / "sts2", poses_dir, split_lists=False)),
                      spoken_languages=None, val_fraction=0.2, test_fraction=0.2)
    assert len(everything) == 5 and "<de> <gsg> Haus" in set(everything["text"])
    assert everything["split"].tolist() == [dict(zip(range(5), random_split(5, 0.2, 0.2, 3407)))[r]
                                            for r in everything["row"]]


def test_spreadthesign_refuses_bad_language_codes(tmp_path, poses_dir):
    root = tmp_path / "sts"
    write(root / "SpreadTheSign.csv", "pose,videoLanguage,language,text\n1.pose,American,en,house\n")
    link(poses_dir / HOUSE, root / "1.pose")
    with pytest.raises(DatasetError, match="clip 1: sign-language code 'American'"):
        load("spreadthesign", str(root))


# ---------------------------------------------------------------- ASL Citizen


def asl_citizen_layout(root: Path, poses_dir: Path) -> Path:
    header = "Participant ID,Video file,Gloss,ASL-LEX Code\n"
    write(root / "ASL_Citizen" / "splits" / "train.csv", "\ufeff" + header  # saved with a byte-order mark
          + "P1,0123-HOUSE.mp4,HOUSE,C_01_001\n"
          + "P2,0456-HOUSE2.mp4,HOUSE2,C_01_001\n"
          + "P1,4.729912950-SAD.mp4,SAD ,C_02_002\n")  # a stem with dots, a gloss with a trailing space
    write(root / "ASL_Citizen" / "splits" / "val.csv", header + "P3,0789-SAD.mp4,SAD,C_02_002\n")
    write(root / "ASL_Citizen" / "splits" / "test.csv", header
          + "P4,0999-HOUSE.mp4,HOUSE,C_01_001\n"
          + "P4,1000-REMEMBER.mp4,REMEMBER2,C_02_014\n")  # listed, video never posed
    for name, real in [("0123-HOUSE", HOUSE), ("0456-HOUSE2", HOUSE), ("4.729912950-SAD", SAD),
                       ("0789-SAD", SAD), ("0999-HOUSE", HOUSE)]:
        link(poses_dir / real, root / "poses" / f"{name}.pose")
    return root


def test_asl_citizen(tmp_path, poses_dir):
    root = asl_citizen_layout(tmp_path / "aslc", poses_dir)
    raw = load("asl_citizen", str(root))
    check_columns(raw)
    rows = by_id(raw)
    assert len(raw) == 6 and raw["missing"].sum() == 1 and rows["1000-REMEMBER"]["missing"]
    assert rows["4.729912950-SAD"]["pose"] == str(root / "poses" / "4.729912950-SAD.pose")
    assert rows["4.729912950-SAD"]["gloss"] == "SAD" and rows["0789-SAD"]["split"] == "val"
    assert rows["0123-HOUSE"]["signer"] == "P1" and rows["0123-HOUSE"]["asl_lex_code"] == "C_01_001"
    assert rows["0123-HOUSE"]["text"] == "<en> <ase> HOUSE"
    assert rows["0123-HOUSE"]["class_id"] != rows["0456-HOUSE2"]["class_id"]  # variants stay apart raw
    clean = by_id(load("asl_citizen", str(root), clean_glosses=True))
    assert clean["0456-HOUSE2"]["gloss"] == "house" and clean["0456-HOUSE2"]["raw_gloss"] == "HOUSE2"
    assert clean["0123-HOUSE"]["class_id"] == clean["0456-HOUSE2"]["class_id"] == clean["0999-HOUSE"]["class_id"]
    assert clean["1000-REMEMBER"]["text"] == "<en> <ase> remember"
    assert len({r["class_id"] for r in clean.values()}) == 3


def test_asl_citizen_without_split_csvs(tmp_path):
    (tmp_path / "poses").mkdir()
    with pytest.raises(DatasetError, match="no ASL Citizen split CSVs"):
        load("asl_citizen", str(tmp_path))
    write(tmp_path / "splits" / "train.csv", "Participant ID,Video file,Gloss\nP1,a.mp4,A\n")
    with pytest.raises(DatasetError, match="lacks column.*ASL-LEX Code"):
        load("asl_citizen", str(tmp_path))


# ---------------------------------------------------------------- Sem-Lex


def sem_lex_layout(root: Path, poses_dir: Path) -> Path:
    write(root / "semlex_metadata.csv",
          ",video_id,signer_id,duration,split,label_type,label\n"
          "0,vidA,s1,1.9,train,asllex,eat_1\n"
          "1,vidB,s2,2.1,val,asllex,eat\n"
          "2,vidC,s1,1.2,test,asllex,oh_i_see\n"
          "3,vidA,s1,1.9,test,asllex,eat_1\n"        # the same video again, in another split
          "4,vidD,s3,3.0,train,freetext,30_minute \n"
          "5,vidE,s3,2.5,train,asllex,30_minute\n"
          "6,vidF,s2,,train,,\n"                     # no label: dropped
          "7,vidG,s4,1.0,test,asllex,eat_2\n")       # listed, never posed
    for vid, real, split in [("vidA", HOUSE, "train"), ("vidB", SAD, "val"), ("vidC", SAD, "test"),
                             ("vidD", HOUSE, "train"), ("vidE", HOUSE, "train"), ("vidF", SAD, "train")]:
        link(poses_dir / real, root / "poses" / split / f"{vid}.pose")
    return root


def test_sem_lex(tmp_path, poses_dir):
    root = sem_lex_layout(tmp_path / "semlex", poses_dir)
    raw = load("sem_lex", str(root))
    check_columns(raw)
    rows = by_id(raw)
    assert set(rows) == {"vidA", "vidB", "vidC", "vidD", "vidE", "vidG"}
    assert rows["vidA"]["split"] == "train"  # repeated in test: kept once, in train
    assert rows["vidD"]["gloss"] == rows["vidE"]["gloss"] == "30_minute"  # stray space removed
    assert rows["vidD"]["class_id"] == rows["vidE"]["class_id"]
    assert rows["vidA"]["class_id"] != rows["vidB"]["class_id"]
    assert rows["vidG"]["missing"] and raw["missing"].sum() == 1
    assert rows["vidC"]["pose"] == str(root / "poses" / "test" / "vidC.pose")
    assert rows["vidB"]["signer"] == "s2" and rows["vidB"]["duration"] == pytest.approx(2.1)
    clean = by_id(load("sem_lex", str(root), clean_glosses=True))
    assert clean["vidA"]["gloss"] == clean["vidB"]["gloss"] == clean["vidG"]["gloss"] == "eat"
    assert clean["vidA"]["class_id"] == clean["vidB"]["class_id"] == clean["vidG"]["class_id"]
    assert clean["vidC"]["text"] == "<en> <ase> oh i see"
    assert clean["vidD"]["text"] == "<en> <ase> 30 minute"
    asllex = load("sem_lex", str(root), label_types="asllex")
    assert "vidD" not in set(asllex["id"])


# ---------------------------------------------------------------- WLASL


def wlasl_layout(root: Path, poses_dir: Path) -> Path:
    instances_book = [
        {"video_id": "69241", "split": "train", "signer_id": 118, "frame_start": 1, "frame_end": -1, "fps": 25,
         "url": "http://aslbricks.org/New/ASL-Videos/book.mp4", "source": "aslbrick", "variation_id": 0,
         "instance_id": 0, "bbox": [385, 37, 885, 720]},
        {"video_id": "07069", "split": "val", "signer_id": 10, "frame_start": 5, "frame_end": 40, "fps": 25,
         "url": "https://www.youtube.com/watch?v=0UsjUE-TXns", "source": "asllex", "variation_id": 0,
         "instance_id": 1, "bbox": [0, 0, 100, 100]},
        {"video_id": "07070", "split": "test", "signer_id": 11, "frame_start": 41, "frame_end": 80, "fps": 25,
         "url": "https://www.youtube.com/watch?v=0UsjUE-TXns", "source": "asllex", "variation_id": 1,
         "instance_id": 2, "bbox": [0, 0, 100, 100]},
    ]
    instances_all = [
        {"video_id": "01610", "split": "train", "signer_id": 12, "frame_start": 3, "frame_end": -1, "fps": 25,
         "url": "https://youtu.be/AbCdEfGhIjK", "source": "youtube", "variation_id": 0, "instance_id": 0,
         "bbox": [0, 0, 10, 10]},
        {"video_id": "01611", "split": "test", "signer_id": 13, "frame_start": 1, "frame_end": -1, "fps": 25,
         "url": "https://www.signingsavvy.com/media/mp4-ld/all.mp4", "source": "signingsavvy",
         "variation_id": 0, "instance_id": 1, "bbox": [0, 0, 10, 10]},  # a dead link: never downloaded
    ]
    # "book" comes first in the JSON although "all" sorts first: class ids follow the JSON (WLASL's numbering)
    entries = [{"gloss": "book", "instances": instances_book}, {"gloss": "all", "instances": instances_all}]
    write(root / "start_kit" / "WLASL_v0.3.json", json.dumps(entries))
    for vid, real in [("69241", HOUSE), ("07069", SAD), ("07070", SAD), ("01610", HOUSE),
                      ("0UsjUE-TXns", HOUSE), ("AbCdEfGhIjK", SAD)]:
        link(poses_dir / real, root / "poses" / f"{vid}.pose")
    return root


def test_wlasl_frame_ranges_and_classes(tmp_path, poses_dir):
    root = wlasl_layout(tmp_path / "wlasl", poses_dir)
    df = load("wlasl", str(root))
    check_columns(df)
    rows = by_id(df)
    assert rows["69241"]["class_id"] == 0 and rows["01610"]["class_id"] == 1
    cut = rows["07069"]  # frames 5..40, 1-based inclusive -> 0-based [4, 40)
    assert (cut["frame_start"], cut["frame_end"], cut["start_frame"], cut["end_frame"]) == (5, 40, 4, 40)
    assert cut["trimmed"] and cut["split"] == "val" and cut["signer"] == "10"
    whole = rows["69241"]  # frame_end -1: to the end
    assert (whole["start_frame"], whole["frame_end"]) == (0, -1) and pd.isna(whole["end_frame"])
    assert not whole["trimmed"]
    # a YouTube instance that runs to the end: the start kit copies the whole video, so the start is not applied
    open_end = rows["01610"]
    assert open_end["start_frame"] == 2 and pd.isna(open_end["end_frame"]) and not open_end["trimmed"]
    assert rows["01611"]["missing"] and df["missing"].sum() == 1
    assert df["end_frame"].dtype == "Int64"
    # poses from the raw downloads: YouTube instances share the YouTube id's file, nothing is trimmed
    raw = by_id(load("wlasl", str(root), source_videos="raw"))
    assert raw["07069"]["pose"] == raw["07070"]["pose"] == str(root / "poses" / "0UsjUE-TXns.pose")
    assert raw["01610"]["pose"] == str(root / "poses" / "AbCdEfGhIjK.pose")
    assert not any(r["trimmed"] for r in raw.values())
    top1 = load("wlasl", str(root), subset=1)
    assert set(top1["gloss"]) == {"book"}
    with pytest.raises(DatasetError, match="source_videos"):
        load("wlasl", str(root), source_videos="cut")


# ---------------------------------------------------------------- RWTH fingerspelling


def test_rwth_fingerspelling(tmp_path, poses_dir):
    root = tmp_path / "rwth"
    write(root / "gesture_ids.txt", " 1 = A\n 2 = B\n 3 = C\n27 = AE\n30 = SCH\n")
    for vid, real in [("1_1_1_cam2", HOUSE), ("1_1_1_cam1", SAD), ("2_27_2_cam2", SAD), ("3_30_1_cam2", HOUSE)]:
        link(poses_dir / real, root / "pose" / f"{vid}.pose")
    write(root / "train.txt", "1_1_1_cam2\n1_1_1_cam1\n2_27_2_cam2\n")
    write(root / "val.txt", "3_2_1_cam2\n")  # listed, never posed
    write(root / "test.txt", "3_30_1_cam2\n")
    df = load("rwth_fingerspelling", str(root), poses_dir=str(root / "pose"))
    check_columns(df)
    rows = by_id(df)
    assert set(rows) == {"1_1_1_cam2", "2_27_2_cam2", "3_2_1_cam2", "3_30_1_cam2"}  # cam1 left out
    assert rows["1_1_1_cam2"]["text"] == "Fingerspell the letter A in German Sign Language."
    assert rows["2_27_2_cam2"]["text"] == "Fingerspell the letter AE in German Sign Language."
    assert rows["2_27_2_cam2"]["class_id"] == 26 and rows["2_27_2_cam2"]["gesture_id"] == 27
    assert rows["2_27_2_cam2"]["signer"] == "2" and rows["2_27_2_cam2"]["session"] == 2
    assert rows["3_2_1_cam2"]["missing"] and rows["3_2_1_cam2"]["split"] == "val"
    assert rows["1_1_1_cam2"]["sign_language"] == "gsg"
    both = load("rwth_fingerspelling", str(root), poses_dir=str(root / "pose"), cameras="cam1,cam2")
    assert "1_1_1_cam1" in set(both["id"])


def test_rwth_fingerspelling_without_lists(tmp_path, poses_dir):
    root = tmp_path / "rwth"
    videos = [f"{s}_{g}_1_cam{c}" for s in (1, 2) for g in (1, 28, 35) for c in (1, 2)]
    for vid in videos:
        link(poses_dir / HOUSE, root / f"{vid}.pose")
    link(poses_dir / HOUSE, root / "notes.pose")  # not a video id: ignored
    df = load("rwth_fingerspelling", str(root), val_fraction=0.25, test_fraction=0.25)
    assert len(df) == 6 and not df["missing"].any()
    # split over all ids (both cameras, sorted) as the original, then cam1 left out
    expected = dict(zip(sorted(videos), random_split(len(videos), 0.25, 0.25, 3407)))
    assert all(expected[r["id"]] == r["split"] for r in df.to_dict("records"))
    assert set(df["gloss"]) == {"A", "OE", "Five"}  # the database's 35 gestures when no gesture_ids.txt


# ---------------------------------------------------------------- Google's parquet


def to_google_long(pose: Pose, width: float, height: float, first_frame: int = 17) -> pd.DataFrame:
    """A real pose written as a Kaggle ASL Signs landmark file: one row per frame x landmark, Google's type
    order (face, left_hand, pose, right_hand), x/y divided by the frame size, NaN where not detected."""
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float64)
    confidence = pose.body.confidence[:, 0]
    starts, offset = {}, 0
    for component in pose.header.components:
        starts[component.name] = offset
        offset += len(component.points)
    counts = {"face": 468, "left_hand": 21, "pose": 33, "right_hand": 21}
    parts = []
    for frame in range(data.shape[0]):
        number = first_frame + frame
        for kind, component in GOOGLE_TYPES:
            points = slice(starts[component], starts[component] + counts[kind])
            xyz = data[frame, points] / np.array([width, height, 1.0])
            xyz[confidence[frame, points] == 0] = np.nan
            parts.append(pd.DataFrame({
                "frame": np.int16(number), "row_id": [f"{number}-{kind}-{i}" for i in range(counts[kind])],
                "type": kind, "landmark_index": np.arange(counts[kind], dtype=np.int16),
                "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}))
    return pd.concat(parts, ignore_index=True)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    return path


@pytest.fixture(scope="module")
def originals(poses_dir) -> dict[str, Pose]:
    return {name: read_pose(str(poses_dir / name)) for name in (HOUSE, SAD)}


def holistic_points(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Data and confidence of the four Holistic components (no world landmarks), person 0."""
    part = pose.get_components(list(COMPONENTS))
    return np.ma.getdata(part.body.data)[:, 0], part.body.confidence[:, 0]


@pytest.mark.parametrize("name", [HOUSE, SAD])
def test_google_parquet_round_trip_at_the_real_frame_size(tmp_path, originals, name):
    original = originals[name]
    w, h = original.header.dimensions.width, original.header.dimensions.height
    path = write_parquet(to_google_long(original, w, h), tmp_path / "1.parquet")
    assert pq.read_table(path).num_rows == original.body.data.shape[0] * 543
    converted = google_parquet_to_pose(str(path), width=w, height=h)
    assert [c.name for c in converted.header.components] == list(COMPONENTS)
    assert [len(c.points) for c in converted.header.components] == [33, 468, 21, 21]
    assert all(c.format == "XYZC" for c in converted.header.components)
    assert converted.header.components[0].points == original.header.components[0].points
    data, confidence = holistic_points(converted)
    want_data, want_confidence = holistic_points(original)
    np.testing.assert_allclose(data, want_data, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(confidence, (want_confidence > 0).astype(np.float32))  # no visibility in the file
    # features: identical, since the frame size matches (undetected points are 0 in both)
    np.testing.assert_allclose(pose_features(converted, "reduced_face"), pose_features(original, "reduced_face"),
                               atol=1e-5)
    # bytes work as well as paths, and the file survives a .pose round trip
    from_bytes = google_parquet_to_pose(path.read_bytes(), width=w, height=h)
    np.testing.assert_array_equal(np.ma.getdata(from_bytes.body.data), np.ma.getdata(converted.body.data))


def test_google_parquet_nominal_frame(tmp_path, originals):
    original = originals[HOUSE]
    w, h = original.header.dimensions.width, original.header.dimensions.height  # 1280 x 720
    converted = google_parquet_to_pose(str(write_parquet(to_google_long(original, w, h), tmp_path / "1.parquet")))
    assert (converted.header.dimensions.width, converted.header.dimensions.height) == (NOMINAL_WIDTH, NOMINAL_HEIGHT)
    assert converted.body.fps == NOMINAL_FPS == 30
    data, confidence = holistic_points(converted)
    want, want_confidence = holistic_points(original)
    scale = np.array([NOMINAL_WIDTH / w, NOMINAL_HEIGHT / h, 1.0])
    np.testing.assert_allclose(data, want * scale, rtol=1e-5, atol=1e-3)  # x, y rescaled; z as stored
    features = pose_features(converted, "reduced_face")
    assert features.shape == (original.body.data.shape[0], 609) and np.isfinite(features).all()
    # Shoulder normalisation removes translation and a uniform scale of x, y and z, not a change of aspect
    # ratio (or of x/y against z): the features are those of the original seen in the nominal square frame...
    rescaled = original.get_components(list(COMPONENTS))
    body = np.ma.getdata(rescaled.body.data) * scale.astype(np.float32)
    rescaled = Pose(rescaled.header, NumPyPoseBody(rescaled.body.fps, body, rescaled.body.confidence))
    np.testing.assert_allclose(features, pose_features(rescaled, "reduced_face"), atol=1e-4)
    # ...which differ from the original's own, as 1280 x 720 is not square
    assert not np.allclose(features, pose_features(original, "reduced_face"), atol=1e-2)
    # a uniform scale of all three axes really is invisible to the features
    uniform = Pose(rescaled.header, NumPyPoseBody(rescaled.body.fps, np.ma.getdata(original.get_components(
        list(COMPONENTS)).body.data) * np.float32(2.5), rescaled.body.confidence))
    np.testing.assert_allclose(pose_features(uniform, "reduced_face"), pose_features(original, "reduced_face"),
                               atol=1e-4)


def test_google_parquet_quirks(tmp_path, originals):
    long = to_google_long(originals[SAD], 1280, 720)
    # rows absent altogether (not only NaN) count as not detected; frames keep their order
    frame0 = long["frame"].min()
    dropped = long[~((long["frame"] == frame0) & (long["type"] == "right_hand"))]
    pose = google_parquet_to_pose(str(write_parquet(dropped, tmp_path / "a.parquet")))
    assert pose.body.data.shape[0] == originals[SAD].body.data.shape[0]
    assert np.all(pose.body.confidence[0, 0, -21:] == 0) and np.all(np.ma.getdata(pose.body.data)[0, 0, -21:] == 0)
    # shuffled rows give the same pose
    shuffled = google_parquet_to_pose(str(write_parquet(long.sample(frac=1, random_state=0), tmp_path / "b.parquet")))
    reference = google_parquet_to_pose(str(write_parquet(long, tmp_path / "c.parquet")))
    np.testing.assert_array_equal(np.ma.getdata(shuffled.body.data), np.ma.getdata(reference.body.data))
    bad = long.copy()
    bad.loc[0, "type"] = "torso"
    with pytest.raises(GoogleParquetError, match="unknown landmark type.*torso"):
        google_parquet_to_pose(str(write_parquet(bad, tmp_path / "d.parquet")))
    bad = long.copy()
    bad.loc[bad["type"] == "left_hand", "landmark_index"] = 21
    with pytest.raises(GoogleParquetError, match="landmark_index 21 out of range for type 'left_hand'"):
        google_parquet_to_pose(str(write_parquet(bad, tmp_path / "e.parquet")))
    with pytest.raises(GoogleParquetError, match="listed twice"):
        google_parquet_to_pose(str(write_parquet(pd.concat([long.head(3), long.head(1)]), tmp_path / "f.parquet")))
    with pytest.raises(GoogleParquetError, match="no column.*landmark_index"):
        google_parquet_to_pose(str(write_parquet(long.drop(columns=["landmark_index"]), tmp_path / "g.parquet")))
    with pytest.raises(GoogleParquetError, match="not a readable parquet"):
        google_parquet_to_pose(b"not a parquet file")


def asl_signs_layout(root: Path, originals: dict[str, Pose]) -> Path:
    write(root / "train.csv",
          "path,participant_id,sequence_id,sign\n"
          "train_landmark_files/26734/1000035562.parquet,26734,1000035562,blow\n"
          "train_landmark_files/28656/1000106739.parquet,28656,1000106739,wait\n"
          "train_landmark_files/16069/100015657.parquet,16069,100015657,cloud\n"   # file absent
          "train_landmark_files/25571/1000210073.parquet,25571,1000210073,wait\n")
    write(root / "sign_to_prediction_index_map.json", json.dumps({"TV": 0, "blow": 1, "cloud": 2, "wait": 3}))
    for rel, name in [("26734/1000035562", HOUSE), ("28656/1000106739", SAD), ("25571/1000210073", SAD)]:
        write_parquet(to_google_long(originals[name], 1280, 720), root / "train_landmark_files" / f"{rel}.parquet")
    return root


def test_asl_signs(tmp_path, originals):
    root = asl_signs_layout(tmp_path / "asl-signs", originals)
    df = load("asl_signs", str(root), val_fraction=0.25, test_fraction=0.25)
    check_columns(df)
    rows = by_id(df)
    assert rows["1000035562"]["pose"] == str(root / "train_landmark_files" / "26734" / "1000035562.parquet")
    assert rows["1000035562"]["class_id"] == 1 and rows["1000106739"]["class_id"] == 3  # the published map
    assert rows["1000106739"]["signer"] == "28656" and rows["1000106739"]["text"] == "<en> <ase> wait"
    assert rows["100015657"]["missing"] and df["missing"].sum() == 1
    assert df["split"].tolist() == random_split(4, 0.25, 0.25, 3407)
    sentence = by_id(load("asl_signs", str(root), prompt="sentence"))
    assert sentence["1000106739"]["text"] == 'Sign the sign "wait" in American Sign Language.'
    features = pose_features(google_parquet_to_pose(rows["1000106739"]["pose"]), "reduced_face")
    assert features.shape[1] == 609
    write(root / "splits" / "train.txt", "1000035562\n1000106739\n")
    write(root / "splits" / "test.txt", "1000210073\n100015657\n")
    listed = by_id(load("asl_signs", str(root)))
    assert listed["1000210073"]["split"] == "test" and listed["1000035562"]["split"] == "train"


# ---------------------------------------------------------------- signclip manifest


def test_manifest_job_end_to_end(tmp_path, poses_dir, capsys):
    root = asl_citizen_layout(tmp_path / "aslc", poses_dir)
    out = tmp_path / "manifests"
    assert manifest_job.main(["asl_citizen", "--root", str(root), "--output", str(out), "--clean-glosses",
                              "--csv"]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "missing.csv" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"train": {"clips": 3, "glosses": 2, "signers": 2, "missing": 0, "failed": 0},
                       "val": {"clips": 1, "glosses": 1, "signers": 1, "missing": 0, "failed": 0},
                       "test": {"clips": 1, "glosses": 1, "signers": 1, "missing": 1, "failed": 0}}
    assert sorted(p.name for p in out.iterdir()) == ["failed.csv", "missing.csv", "summary.json", "test.csv",
                                                     "test.parquet", "train.csv", "train.parquet", "val.csv",
                                                     "val.parquet"]
    assert pd.read_csv(out / "failed.csv").columns.tolist() == ["id", "split", "gloss", "pose", "error"]
    assert pd.read_csv(out / "missing.csv")["id"].tolist() == ["1000-REMEMBER"]
    train = pd.read_parquet(out / "train.parquet")
    assert "missing" not in train.columns and len(train) == 3
    # the manifests are what training and evaluation read
    pairs = read_pairs(str(out / "train.parquet"))
    assert set(pairs["text"]) == {"<en> <ase> house", "<en> <ase> sad"}
    assert pose_features(pairs["pose"].iloc[0]).shape[1] == 609
    house = train.loc[train["gloss"] == "house", "class_id"].unique().tolist()
    assert read_pairs(str(out / "test.csv"))["class_id"].astype(int).tolist() == house  # CSV cells are strings
    # through the signclip command as well
    from signclip.cli import COMMANDS
    from signclip.cli import main as cli_main
    assert COMMANDS["manifest"][0] == "signclip.jobs.manifest"
    assert cli_main(["manifest", "wlasl", "--root", str(wlasl_layout(tmp_path / "wlasl", poses_dir)),
                     "--output", str(tmp_path / "wl"), "--set", "subset=1"]) == 0
    wl = pd.read_parquet(tmp_path / "wl" / "val.parquet")
    assert wl[["start_frame", "end_frame"]].values.tolist() == [[4, 40]]


def test_manifest_job_converts_google_parquet(tmp_path, originals, capsys):
    root = asl_signs_layout(tmp_path / "asl-signs", originals)
    out, poses = tmp_path / "manifests", tmp_path / "poses"
    argv = ["asl_signs", "--root", str(root), "--output", str(out), "--write-poses", str(poses),
            "--val-fraction", "0", "--test-fraction", "0"]
    assert manifest_job.main(argv) == 0
    train = pd.read_parquet(out / "train.parquet")
    assert len(train) == 3 and all(p.endswith(".pose") for p in train["pose"])
    assert (poses / "train_landmark_files" / "28656" / "1000106739.pose").exists()
    assert pose_features(train["pose"].iloc[0]).shape == (originals[HOUSE].body.data.shape[0], 609)
    assert json.loads((out / "summary.json").read_text())["train"]["missing"] == 1
    first = (poses / "train_landmark_files" / "26734" / "1000035562.pose").stat().st_mtime_ns
    assert manifest_job.main(argv) == 0  # a rerun keeps what is there
    assert (poses / "train_landmark_files" / "26734" / "1000035562.pose").stat().st_mtime_ns == first


def assert_outputs_match_summary(out: Path) -> dict:
    """Every split file, missing.csv and failed.csv exist and hold exactly what summary.json counts."""
    summary = json.loads((out / "summary.json").read_text())
    ids = {}
    for split, row in summary.items():
        table = pd.read_parquet(out / f"{split}.parquet")
        assert len(table) == row["clips"] and set(table["split"]) <= {split}
        assert not {"missing", "error"} & set(table.columns)
        ids[split] = set(table["id"])
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    for name, key in (("missing.csv", "missing"), ("failed.csv", "failed")):
        listed = pd.read_csv(out / name, dtype=str, keep_default_na=False)
        assert {s: int((listed["split"] == s).sum()) for s in summary} == {s: r[key] for s, r in summary.items()}
    return summary


def test_manifest_job_rerun_replaces_every_output(tmp_path, poses_dir):
    root = asl_citizen_layout(tmp_path / "aslc", poses_dir)
    out = tmp_path / "manifests"
    argv = ["asl_citizen", "--root", str(root), "--output", str(out)]
    assert manifest_job.main(argv + ["--csv"]) == 0
    assert len(pd.read_parquet(out / "val.parquet")) == 1
    # the dataset is fixed: the missing pose appears, the val clip moves to test
    link(poses_dir / SAD, root / "poses" / "1000-REMEMBER.pose")
    splits = root / "ASL_Citizen" / "splits"
    val_rows = (splits / "val.csv").read_text().splitlines()[1:]
    (splits / "val.csv").unlink()
    (splits / "test.csv").write_text((splits / "test.csv").read_text() + "\n".join(val_rows) + "\n")
    assert manifest_job.main(argv) == 0  # without --csv this time
    summary = assert_outputs_match_summary(out)
    assert summary["val"]["clips"] == 0 and summary["test"]["clips"] == 3
    assert sum(row["missing"] for row in summary.values()) == 0
    val = pd.read_parquet(out / "val.parquet")
    assert val.empty and val.columns.tolist() == pd.read_parquet(out / "train.parquet").columns.tolist()
    assert pd.read_parquet(out / "val.parquet", columns=["class_id"])["class_id"].dtype == np.int64
    # the CSV copies the first run wrote follow the Parquet too
    assert pd.read_csv(out / "val.csv").empty and len(pd.read_csv(out / "test.csv")) == 3
    assert pd.read_csv(out / "missing.csv").columns.tolist() == ["id", "split", "gloss", "pose"]


def test_manifest_job_reports_failed_conversions(tmp_path, originals, capsys):
    root = asl_signs_layout(tmp_path / "asl-signs", originals)
    corrupt = root / "train_landmark_files" / "28656" / "1000106739.parquet"
    good = corrupt.read_bytes()
    corrupt.write_bytes(b"not a parquet file")
    out, poses = tmp_path / "manifests", tmp_path / "poses"
    argv = ["asl_signs", "--root", str(root), "--output", str(out), "--write-poses", str(poses),
            "--val-fraction", "0", "--test-fraction", "0"]
    assert manifest_job.main(argv) == 1  # some items failed
    printed = capsys.readouterr()
    assert "failed.csv" in printed.out and "none of the" not in printed.err
    summary = assert_outputs_match_summary(out)
    assert summary["train"] == {"clips": 2, "glosses": 2, "signers": 2, "missing": 1, "failed": 1}
    failed = pd.read_csv(out / "failed.csv", dtype=str)
    assert failed["id"].tolist() == ["1000106739"] and failed["pose"].tolist() == [str(corrupt)]
    assert "not a readable parquet" in failed["error"].iloc[0] and str(corrupt) in failed["error"].iloc[0]
    assert pd.read_csv(out / "missing.csv", dtype=str)["id"].tolist() == ["100015657"]
    assert "error" not in pd.read_parquet(out / "train.parquet").columns
    # once the file is repaired, a rerun converts it and nothing is reported failed any more
    corrupt.write_bytes(good)
    assert manifest_job.main(argv) == 0
    assert assert_outputs_match_summary(out)["train"]["failed"] == 0
    # when every clip fails, the message says so (not that the files do not exist)
    for parquet in (root / "train_landmark_files").rglob("*.parquet"):
        parquet.write_bytes(b"not a parquet file")
    capsys.readouterr()
    argv = ["asl_signs", "--root", str(root), "--output", str(tmp_path / "m2"), "--write-poses",
            str(tmp_path / "p2"), "--val-fraction", "0", "--test-fraction", "0"]
    assert manifest_job.main(argv) == 1
    err = capsys.readouterr().err
    assert "none of the 3 clips with a landmark file converted to .pose" in err and "failed.csv" in err
    assert "--poses" not in err
    assert assert_outputs_match_summary(tmp_path / "m2")["train"] == {"clips": 0, "glosses": 0, "signers": 0,
                                                                      "missing": 1, "failed": 3}


def test_asl_signs_reads_its_index_csv_from_the_root(tmp_path, originals, monkeypatch):
    root = asl_signs_layout(tmp_path / "asl-signs", originals)
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "train.csv", "path,participant_id,sequence_id,sign\n"
                                   "train_landmark_files/26734/1000035562.parquet,26734,999,other\n")
    monkeypatch.chdir(elsewhere)  # another dataset's train.csv in the current directory is not the default
    assert "999" not in set(load("asl_signs", str(root))["id"])
    assert set(load("asl_signs", str(root), csv=str(elsewhere / "train.csv"))["id"]) == {"999"}  # given: used
    (root / "train.csv").unlink()
    with pytest.raises(DatasetError, match=f"{root}: no ASL Signs CSV.*csv=PATH"):
        load("asl_signs", str(root))


def test_the_embed_job_reads_a_google_parquet_manifest_as_it_is(tmp_path, originals, poses_dir):
    from signclip.embedding.items import list_items
    from signclip.embedding.stages import RunSpec, featurize, model_spec
    from tests.embed_helpers import tiny_model

    root = asl_signs_layout(tmp_path / "asl-signs", originals)
    out = tmp_path / "manifests"  # no --write-poses: the manifest names the landmark .parquet files
    assert manifest_job.main(["asl_signs", "--root", str(root), "--output", str(out), "--val-fraction", "0",
                              "--test-fraction", "0"]) == 0
    items = list_items(str(out / "train.parquet"))
    assert len(items) == 3 and {i.kind for i in items} == {"pose"} and items[0].source.endswith(".parquet")
    spec = RunSpec(**model_spec(str(tiny_model(tmp_path / "tiny"))), output=str(tmp_path / "emb"), run_id="r1")
    batch = {k: np.array([i.as_row()[k] for i in items], dtype=object) for k in items[0].as_row()}
    featurized = featurize(batch, spec)
    assert list(featurized["error"]) == [""] * 3 and "failed" not in list(featurized["status"])
    for item, data, frames in zip(items, featurized["features"], featurized["frames"]):
        expected = pose_features(item.source, spec.feature_set)
        assert frames == len(expected) > 0
        np.testing.assert_array_equal(np.frombuffer(data, np.float32).reshape(expected.shape), expected)


@pytest.mark.parametrize("argv, message", [
    (["how2sign", "--root", "{root}", "--output", "{out}"], "unknown dataset 'how2sign'"),
    (["asl_citizen", "--root", "{root}/nowhere", "--output", "{out}"], "does not exist"),
    (["asl_citizen", "--root", "{root}", "--output", "{out}", "--val-fraction", "0.1"],
     "--val-fraction does not apply"),
    (["asl_citizen", "--root", "{root}", "--output", "{out}", "--set", "colour=blue"], "--set colour: no such option"),
    (["wlasl", "--root", "{root}", "--output", "{out}", "--write-poses", "{out}/p"], "applies to asl_signs"),
    (["wlasl", "--root", "{root}", "--output", "{out}"], "no WLASL_v"),
])
def test_manifest_job_refuses_bad_input(tmp_path, poses_dir, capsys, argv, message):
    root = asl_citizen_layout(tmp_path / "aslc", poses_dir)
    argv = [a.format(root=root, out=tmp_path / "out") for a in argv]
    assert manifest_job.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_manifest_job_refuses_datasets_without_clips(tmp_path, capsys):
    root = tmp_path / "aslc"
    header = "Participant ID,Video file,Gloss,ASL-LEX Code\n"
    write(root / "splits" / "train.csv", header)
    (root / "poses").mkdir()
    assert manifest_job.main(["asl_citizen", "--root", str(root), "--output", str(tmp_path / "o")]) == 2
    assert "no clips" in capsys.readouterr().err
    write(root / "splits" / "train.csv", header + "P1,a-HOUSE.mp4,HOUSE,C\n")
    assert manifest_job.main(["asl_citizen", "--root", str(root), "--output", str(tmp_path / "o")]) == 2
    assert "none of the 1 pose files" in capsys.readouterr().err


def test_feature_pipeline_reads_google_parquet_paths(tmp_path, originals):
    """A manifest row pointing at a Google parquet file featurises like the converted pose."""
    from signclip.pose.features import pose_features
    from signclip.pose.reader import PoseInputError

    name = next(iter(originals))
    original = originals[name]
    path = write_parquet(to_google_long(original, NOMINAL_WIDTH, NOMINAL_HEIGHT), tmp_path / "clip.parquet")
    np.testing.assert_array_equal(pose_features(str(path)), pose_features(google_parquet_to_pose(str(path))))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises((PoseInputError, GoogleParquetError), match="bad.parquet"):
        pose_features(str(tmp_path / "bad.parquet"))


def test_a_pair_with_an_empty_gloss_or_spoken_language_is_read_as_a_missing_value(tmp_path):
    """A Parquet manifest's null is None: it must not become the gloss 'None' or the language '<None>'."""
    rows = {"pose": ["a.pose", "b.pose"], "gloss": ["house", "sad"], "sign_language": ["ase", "gsg"],
            "spoken_language": [None, "de"]}
    pq.write_table(pa.table(rows), tmp_path / "m.parquet")
    assert read_pairs(str(tmp_path / "m.parquet"))["text"].tolist() == ["<en> <ase> house", "<de> <gsg> sad"]
    rows["gloss"][1] = None
    pq.write_table(pa.table(rows), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"m.parquet: row 2: the gloss is empty"):
        read_pairs(str(tmp_path / "m.parquet"))
    with pytest.raises(ValueError, match=r"m.parquet: row 2: the gloss is empty"):
        read_pairs(str(tmp_path / "m.parquet"), prompt_template='Sign "{gloss}" in {language}.')
