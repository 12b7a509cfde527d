"""The storage layer's listing and relative paths: on disk (its own fast path) they name what fsspec names."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from signclip.io import storage

SUFFIXES = (".pose", ".mp4")


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """Nested folders, upper-case suffixes, other files, a folder named like a pose, symbolic links to a file,
    to a folder, to nothing and in a loop."""
    root = tmp_path / "corpus"
    for name in ("a.pose", "b/c.POSE", "b/d/e.mp4", "b/notes.txt", "x.pose/inner.pose", "outside/o.pose"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    os.symlink(root / "a.pose", root / "b" / "link.pose")
    os.symlink(root / "outside", root / "linked")
    os.symlink(root / "gone.pose", root / "broken.pose")
    os.symlink(root / "b", root / "b" / "d" / "loop")
    return root


def _fsspec_listing(pattern: str) -> list[str]:
    fs = fsspec.filesystem("file")
    found = fs.glob(pattern) if "*" in pattern else fs.find(pattern)
    return sorted(f for f in found if f.lower().endswith(SUFFIXES) and not fs.isdir(f))


def test_a_folder_on_disk_lists_what_fsspec_lists(tree):
    listed = storage.expand(str(tree), SUFFIXES)
    assert listed == _fsspec_listing(str(tree))
    relative = [storage.relative_to(p, str(tree)) for p in listed]
    assert {"a.pose", "b/c.POSE", "b/d/e.mp4", "b/link.pose", "x.pose/inner.pose", "broken.pose"} <= set(relative)
    assert "b/notes.txt" not in relative and "x.pose" not in relative
    assert "linked/o.pose" not in relative  # a linked folder is not followed (nor is a loop of links)
    assert storage.expand(str(tree / "b" / "*.pose"), SUFFIXES) == [str(tree / "b" / "link.pose")]
    assert storage.expand(str(tree / "*"), SUFFIXES) == _fsspec_listing(str(tree / "*"))
    assert storage.expand(str(tree / "a.pose"), SUFFIXES) == [str(tree / "a.pose")]
    with pytest.raises(FileNotFoundError, match="no-such: no such file or directory"):
        storage.expand(str(tree / "no-such"), SUFFIXES)


def test_an_object_store_lists_through_fsspec(s3_bucket):
    for name in ("corpus/a.pose", "corpus/b/c.pose", "corpus/b/notes.txt", "corpus-2/d.pose"):
        storage.write_bytes_atomic(f"{s3_bucket}/{name}", b"x")
    listed = storage.expand(f"{s3_bucket}/corpus", SUFFIXES)
    assert listed == [f"{s3_bucket}/corpus/a.pose", f"{s3_bucket}/corpus/b/c.pose"]
    assert [storage.relative_to(p, f"{s3_bucket}/corpus") for p in listed] == ["a.pose", "b/c.pose"]
    assert storage.expand(f"{s3_bucket}/corpus/b/*", SUFFIXES) == [f"{s3_bucket}/corpus/b/c.pose"]
    assert storage.expand(f"{s3_bucket}/corpus*/*.pose", SUFFIXES) == [f"{s3_bucket}/corpus-2/d.pose",
                                                                      f"{s3_bucket}/corpus/a.pose"]


@pytest.mark.parametrize("path,root,expected", [
    ("/data/poses/a/b.pose", "/data/poses", "a/b.pose"),
    ("/data/poses/a/b.pose", "/data/poses/", "a/b.pose"),
    ("/data/poses/a/./b.pose", "/data/poses", "a/b.pose"),
    ("/data/poses/x/../b.pose", "/data/poses", "b.pose"),
    ("/data/other/b.pose", "/data/poses", "../other/b.pose"),
    ("/data/posesque/b.pose", "/data/poses", "../posesque/b.pose"),
    ("/b.pose", "/", "b.pose"),
    ("s3://bucket/poses/a/b.pose", "s3://bucket/poses", "a/b.pose"),
    ("s3://bucket/other/b.pose", "s3://bucket/poses", "../other/b.pose"),
    ("s3://bucket/poses/a//b.pose", "s3://bucket/poses", "a/b.pose"),
    ("s3://bucket/poses/a/..", "s3://bucket/poses", "."),
    ("s3://bucket/poses/a/.", "s3://bucket/poses", "a"),
    ("s3://bucket/poses/./a/b.pose", "s3://bucket/poses", "a/b.pose"),
])
def test_relative_paths(path, root, expected):
    assert storage.relative_to(path, root) == expected


def test_one_cache_home_for_models_and_sample_data(monkeypatch, tmp_path):
    from signclip.io import model_cache, sample_data

    monkeypatch.setenv("SIGNCLIP_CACHE", str(tmp_path))
    assert (model_cache.cache_root(), sample_data.cache_dir()) == (tmp_path / "models", tmp_path / "data")
    monkeypatch.setenv("SIGNCLIP_CACHE", "")  # set but empty: the default, never a folder relative to the cwd
    home = Path.home() / ".cache" / "signclip"
    assert (model_cache.cache_root(), sample_data.cache_dir()) == (home / "models", home / "data")
