"""Models from object storage: fetched by the process that loads them into its node's cache, keyed by content,
once per node however many processes ask, never used partial, corrupt or other than expected."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

import signclip
from signclip.io import model_cache, storage
from signclip.model.checkpoint import CheckpointError


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SIGNCLIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _upload(model: signclip.SignCLIP, local: Path, url: str) -> str:
    model.save(str(local))
    storage.put_dir(str(local), url)
    return model_cache.fingerprint(local)


def test_a_model_on_s3_loads_like_the_local_one_and_is_fetched_once(tmp_path, s3_bucket, cache):
    model = signclip.create("tiny", seed=1)
    url = f"{s3_bucket}/models/tiny"
    fp = _upload(model, tmp_path / "local", url)
    loaded = signclip.load(url)
    np.testing.assert_array_equal(loaded.embed_texts(["<en> <ase> house"]), model.embed_texts(["<en> <ase> house"]))
    assert sorted(p.name for p in cache.iterdir()) == sorted([fp, "locks", "sources", "tmp"])
    assert not list((cache / "tmp").iterdir())  # nothing half-fetched left behind
    first = (cache / fp / "model.safetensors").stat().st_mtime_ns
    assert model_cache.local_model(url) == str(cache / fp)
    assert (cache / fp / "model.safetensors").stat().st_mtime_ns == first  # not fetched again


def test_a_models_fingerprint_is_hashed_only_for_a_local_directory(tmp_path, s3_bucket, cache, monkeypatch):
    url = f"{s3_bucket}/models/tiny"
    fp = _upload(signclip.create("tiny", seed=2), tmp_path / "local", url)
    assert model_cache.local_model_and_fingerprint(str(tmp_path / "local")) == (str(tmp_path / "local"), fp)
    model_cache.local_model(url)  # in this node's cache now
    monkeypatch.setattr(model_cache, "fingerprint", lambda directory: pytest.fail("a fetched model was re-hashed"))
    assert model_cache.local_model_and_fingerprint(url) == (str(cache / fp), fp)


def test_a_model_replaced_with_the_same_sizes_is_fetched_again(tmp_path, s3_bucket, cache):
    """A retrained model of one architecture has the same file sizes: the key is the content, not the size."""
    url = f"{s3_bucket}/models/retrained"
    old = _upload(signclip.create("tiny", seed=1), tmp_path / "a", url)
    assert model_cache.local_model(url).endswith(old)
    new = _upload(signclip.create("tiny", seed=2), tmp_path / "b", url)
    assert (tmp_path / "a" / "model.safetensors").stat().st_size == (tmp_path / "b" / "model.safetensors").stat().st_size
    assert new != old and model_cache.local_model(url).endswith(new)
    with pytest.raises(model_cache.ModelFetchError, match=f"now holds model {new}, not the expected ffff"):
        model_cache.local_model(url, expected="f" * 16)
    assert model_cache.local_model(url, expected=old).endswith(old)  # the cache still holds the old one by content


def test_the_expected_model_or_an_error_never_another(tmp_path, s3_bucket, cache):
    url = f"{s3_bucket}/models/expect"
    fp = _upload(signclip.create("tiny", seed=3), tmp_path / "m", url)
    with pytest.raises(CheckpointError, match="not the expected 0123456789abcdef"):
        signclip.load(url, fingerprint="0123456789abcdef")
    assert signclip.load(url, fingerprint=fp) is not None


def test_a_local_model_other_than_expected_is_refused(tmp_path, cache):
    """On nodes that share no disk one path can hold another model on each node: a job that planned with one
    model, or a service pinned to one, must not load another from the same path."""
    local = tmp_path / "m"
    signclip.create("tiny", seed=4).save(str(local))
    planned = model_cache.fingerprint(local)
    assert model_cache.local_model(str(local), expected=planned) == str(local)
    assert model_cache.local_model_and_fingerprint(str(local), expected=planned) == (str(local), planned)
    signclip.create("tiny", seed=5).save(str(local))
    now = model_cache.fingerprint(local)
    for call in (model_cache.local_model, model_cache.local_model_and_fingerprint):
        with pytest.raises(model_cache.ModelFetchError, match=f"{local} now holds model {now}, not the expected "
                                                              f"{planned}"):
            call(str(local), expected=planned)
    with pytest.raises(CheckpointError, match=f"not the expected {planned}"):
        signclip.load(local, fingerprint=planned)
    assert model_cache.local_model(str(local)) == str(local)  # nothing expected: not hashed, not refused


def test_a_local_model_that_is_not_there_is_named_when_one_is_expected(tmp_path, cache):
    """A pinned service or a planned job on a node whose disk lacks the model: an error naming the path,
    not a bare FileNotFoundError from deep inside the hashing."""
    absent = tmp_path / "nowhere"
    for call in (model_cache.local_model, model_cache.local_model_and_fingerprint):
        with pytest.raises(model_cache.ModelFetchError, match=f"{absent}: not a SignCLIP model directory "
                                                              r"\(no config.json\)"):
            call(str(absent), expected="0123456789abcdef")
    with pytest.raises(CheckpointError, match=f"{absent}: not a SignCLIP model directory"):
        signclip.load(absent, fingerprint="0123456789abcdef")
    half = tmp_path / "half"
    signclip.create("tiny", seed=4).save(str(half))
    (half / "model.safetensors").unlink()
    with pytest.raises(model_cache.ModelFetchError, match=r"half: not a SignCLIP model directory \(no model"):
        model_cache.local_model_and_fingerprint(str(half))


def test_a_corrupt_or_partial_download_is_never_used(tmp_path, s3_bucket, cache, monkeypatch):
    url = f"{s3_bucket}/models/partial"
    fp = _upload(signclip.create("tiny", seed=4), tmp_path / "m", url)
    fs, _ = storage.filesystem(url)
    real_get = fs.get_file

    def cut_short(remote, local, *args, **kwargs):
        real_get(remote, local, *args, **kwargs)
        if remote.endswith("model.safetensors"):
            with open(local, "r+b") as f:
                f.truncate(100)  # the connection dropped mid-file

    monkeypatch.setattr(fs, "get_file", cut_short)
    with pytest.raises(model_cache.ModelFetchError, match="model.safetensors: fetched 100 bytes, listed"):
        model_cache.local_model(url)
    assert not (cache / fp).exists() and not list((cache / "tmp").iterdir())
    monkeypatch.setattr(fs, "get_file", real_get)
    assert model_cache.local_model(url).endswith(fp)


def test_not_a_model_is_named_with_what_is_missing(s3_bucket, cache):
    storage.write_bytes_atomic(f"{s3_bucket}/models/empty/config.json", json.dumps({"format": "x"}).encode())
    with pytest.raises(CheckpointError, match="models/empty: not a SignCLIP model directory \\(no model.safetensors"):
        signclip.load(f"{s3_bucket}/models/empty")


def _fetch(url: str, queue, downloads: str) -> None:
    real = model_cache._fetch

    def counted(*args):
        with open(downloads, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args)

    model_cache._fetch = counted
    queue.put(model_cache.local_model(url))


def test_processes_of_one_node_fetching_at_once_download_once(tmp_path, s3_bucket, cache, monkeypatch):
    url = f"{s3_bucket}/models/concurrent"
    fp = _upload(signclip.create("tiny", seed=5), tmp_path / "m", url)
    ctx = multiprocessing.get_context("spawn")  # like actors: separate processes, each with its own filesystems
    queue = ctx.Queue()
    downloads = tmp_path / "downloads"
    workers = [ctx.Process(target=_fetch, args=(url, queue, str(downloads))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0] * 4
    assert {queue.get(timeout=5) for _ in workers} == {str(cache / fp)}
    assert len(downloads.read_text().split()) == 1, "one process downloads, the others wait and reuse it"
    assert len(list((cache / "sources").iterdir())) == 1 and not list((cache / "tmp").iterdir())
