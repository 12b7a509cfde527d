"""How a pass of the Ray Data jobs ends when a lost node takes results with it (signclip.jobs.ray_data)."""

from __future__ import annotations

import logging

import pytest
import ray.exceptions as rex

from signclip.jobs.ray_data import until_lost


def _pass(error: BaseException):
    yield "first"
    yield "second"
    raise error


@pytest.mark.parametrize("error", [rex.ObjectLostError("0" * 56, None, "call site"),
                                   rex.ActorDiedError(), rex.WorkerCrashedError(), rex.NodeDiedError("node gone")])
def test_a_pass_cut_short_by_a_lost_node_keeps_what_it_delivered(error, caplog):
    with caplog.at_level(logging.WARNING, logger="signclip.jobs.ray_data"):
        assert list(until_lost(_pass(error), 1, 3)) == ["first", "second"]
    assert "pass 1 of 3 ended early" in caplog.text and type(error).__name__ in caplog.text


def test_a_lost_node_behind_ray_datas_own_error_is_recognised():
    try:
        raise rex.OwnerDiedError("0" * 56, None, "call site")
    except rex.OwnerDiedError as lost:
        wrapped = RuntimeError("streaming executor failed")
        wrapped.__cause__ = lost
    assert list(until_lost(_pass(wrapped), 2, 3)) == ["first", "second"]


def test_any_other_error_ends_the_job():
    with pytest.raises(ValueError, match="a bug"):
        list(until_lost(_pass(ValueError("a bug")), 1, 3))


def test_no_progress_drops_only_ray_datas_notice_that_progress_is_off():
    from signclip.jobs.ray_data import lenient_execution

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    ray_progress = logging.getLogger("ray.data._internal.progress")  # Ray's loggers do not propagate to root
    ray_progress.addHandler(handler)
    try:
        with lenient_execution(progress=False):
            ray_progress.warning("Progress bars disabled. To enable, set `enable_progress_bars = True`.")
            ray_progress.warning("something else about progress")
    finally:
        ray_progress.removeHandler(handler)
    assert seen == ["something else about progress"]
