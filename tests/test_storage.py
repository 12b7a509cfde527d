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


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_brackets_and_stars_in_real_names_name_those_files(where, tmp_path, s3_bucket):
    """``Signs [ASL]/`` is a folder and ``clip[1].mp4`` a file: read as patterns they matched nothing, so an
    extraction named no videos and a rerun into ``out [v1]/`` found none of its poses."""
    from signclip.extraction.plan import existing_poses
    from signclip.io import inputs

    base = str(tmp_path) if where == "disk" else s3_bucket
    for name in ("Signs [ASL]/a.mp4", "Signs [ASL]/sub/b.mp4", "single/clip[1].mp4", "out [v1]/a.pose"):
        storage.write_bytes_atomic(f"{base}/{name}", b"x")
    folder = f"{base}/Signs [ASL]"
    assert storage.expand(folder, SUFFIXES) == [f"{folder}/a.mp4", f"{folder}/sub/b.mp4"]
    assert inputs.list_files(folder, SUFFIXES) == ([f"{folder}/a.mp4", f"{folder}/sub/b.mp4"], folder)
    assert storage.expand(f"{base}/single/clip[1].mp4", SUFFIXES) == [f"{base}/single/clip[1].mp4"]
    assert existing_poses(f"{base}/out [v1]") == {storage.filesystem(f"{base}/out [v1]/a.pose")[1]}
    assert storage.expand(f"{base}/Signs*/*.mp4", SUFFIXES) == [f"{folder}/a.mp4"]  # a pattern still globs
    with pytest.raises(FileNotFoundError, match=r"Signs\*/\*\.mov: the pattern matches no file"):
        storage.expand(f"{base}/Signs*/*.mov", SUFFIXES)


def test_an_output_that_cannot_be_written_is_found_before_any_work(tmp_path, s3_bucket, caplog, capsys, poses_dir,
                                                                   monkeypatch):
    """A job whose --output names a missing bucket used to extract every video, then fail every write."""
    import signclip
    from signclip.jobs import embed, extract

    storage.check_writable(f"{s3_bucket}/out")
    storage.check_writable(str(tmp_path / "new" / "out"))
    assert (tmp_path / "new" / "out").is_dir() and not list((tmp_path / "new" / "out").iterdir())
    (tmp_path / "file").write_bytes(b"x")
    for folder in ("s3://no-such-bucket-here/out", str(tmp_path / "file" / "out")):
        with pytest.raises(PermissionError, match=f"^{folder}: cannot write there"):
            storage.check_writable(folder)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")

    def no_work(*args, **kwargs):
        raise AssertionError("the job started working on an output it cannot write")

    monkeypatch.setattr(extract, "in_passes", no_work)
    monkeypatch.setattr(embed, "_init_ray", no_work)
    rc = extract.main(["--input", str(tmp_path / "videos"), "--output", "s3://no-such-bucket-here/poses"])
    assert rc == 2
    assert "s3://no-such-bucket-here/poses: cannot write there" in caplog.text
    signclip.create("tiny").save(tmp_path / "model")
    rc = embed.main(["--model", str(tmp_path / "model"), "--input", str(poses_dir / "library.pose"),
                     "--output", "s3://no-such-bucket-here/embeddings"])
    assert rc == 2
    assert "error: s3://no-such-bucket-here/embeddings: cannot write there" in capsys.readouterr().err


def test_one_cache_home_for_models_and_sample_data(monkeypatch, tmp_path):
    from signclip.io import model_cache, sample_data

    monkeypatch.setenv("SIGNCLIP_CACHE", str(tmp_path))
    assert (model_cache.cache_root(), sample_data.cache_dir()) == (tmp_path / "models", tmp_path / "data")
    monkeypatch.setenv("SIGNCLIP_CACHE", "")  # set but empty: the default, never a folder relative to the cwd
    home = Path.home() / ".cache" / "signclip"
    assert (model_cache.cache_root(), sample_data.cache_dir()) == (home / "models", home / "data")


def test_scratch_files_of_a_process_that_died_are_removed_by_the_next_one(tmp_path, monkeypatch):
    """A video that crashes its worker mid-extraction left its temporary copy behind on every attempt."""
    import subprocess
    import sys
    import tempfile

    from signclip.io import scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    crash = ("import os, sys; from signclip.io.scratch import scratch_file\n"
             "with scratch_file('signclip-video-', '.mp4') as p:\n"
             "    open(p, 'wb').write(b'x' * 1000); print(p); sys.stdout.flush(); os._exit(9)\n")
    run = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=60)
    left = Path(run.stdout.strip())
    assert run.returncode == 9 and left.parent == tmp_path and left.exists()  # the crash left its copy
    with scratch.scratch_file("signclip-video-", ".mp4") as mine:
        assert not left.exists() and Path(mine).exists()  # ours, with our pid, is kept while in use
        assert scratch.sweep("signclip-video-") == 0
    assert not Path(mine).exists() and not list(tmp_path.iterdir())
