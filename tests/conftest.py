"""Shared fixtures: the real sample data, a local S3 server (moto, server mode) and one local Ray.

The S3 server is a separate process on 127.0.0.1 so that Ray workers reach it like any S3 endpoint;
its address is exported through ``AWS_ENDPOINT_URL`` before Ray starts, so workers inherit it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from signclip.io import sample_data
from tests.s3_server import start_moto


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return sample_data.data_dir()


@pytest.fixture(scope="session")
def poses_dir(data_dir: Path) -> Path:
    return data_dir / "poses"


@pytest.fixture(scope="session")
def videos_dir(data_dir: Path) -> Path:
    return data_dir / "videos"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1; yields its URL with credentials exported in the environment."""
    proc, url = start_moto()
    saved = {k: os.environ.get(k) for k in
             ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    from signclip.io import storage
    storage._filesystem.cache_clear()
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage._filesystem.cache_clear()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket; yields its ``s3://`` URI."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_endpoint: str, tmp_path_factory):
    """One local Ray instance for the whole session (2 CPUs, no dashboard, bound to 127.0.0.1)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
