"""Waiting for an autoscaling cluster's GPUs (signclip.jobs.scaling): what is asked for, and when it gives up."""

from __future__ import annotations

import logging

import pytest
import ray.autoscaler.sdk

from signclip.jobs import scaling


@pytest.fixture
def autoscaler(monkeypatch) -> list:
    requests: list = []
    monkeypatch.setattr(ray.autoscaler.sdk, "request_resources", lambda bundles=None: requests.append(bundles))
    return requests


def _cluster(monkeypatch, gpus_seen: list[float]) -> None:
    looks = iter(gpus_seen)
    monkeypatch.setattr(scaling, "cluster_gpus", lambda: next(looks, gpus_seen[-1]))


def test_gpus_that_join_end_the_wait_and_the_request_is_withdrawn(monkeypatch, autoscaler, caplog):
    _cluster(monkeypatch, [0, 0, 1, 4])
    with caplog.at_level(logging.INFO, logger="signclip.jobs.scaling"):
        assert scaling.wait_for_gpus(4, timeout_s=60, poll_s=0.01) == 4
    assert autoscaler == [[{"GPU": 1}] * 4, []]
    assert "asked the cluster's autoscaler for 4 GPUs (it has 0)" in caplog.text


def test_a_cluster_that_has_them_is_not_asked(monkeypatch, autoscaler):
    _cluster(monkeypatch, [8])
    assert scaling.wait_for_gpus(4, timeout_s=60) == 8 and autoscaler == []


def test_gpus_that_never_come_end_in_an_error_that_says_what_is_there(monkeypatch, autoscaler):
    _cluster(monkeypatch, [0, 1])
    with pytest.raises(TimeoutError, match=r"--wait-for-gpus 0.05: the cluster has 1 of the 2 GPUs asked for"):
        scaling.wait_for_gpus(2, timeout_s=0.05, poll_s=0.01)
    assert autoscaler == [[{"GPU": 1}] * 2, []]  # withdrawn: no standing request keeps nodes up
