"""How a pass of the Ray Data jobs ends when a lost node takes results with it (signclip.jobs.ray_data)."""

from __future__ import annotations

import logging

import pytest
import ray.exceptions as rex

from signclip.jobs.ray_data import in_passes, until_lost


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


def test_passes_redo_only_what_came_back_without_a_result_and_report_what_never_did(caplog):
    passes: list[list[int]] = []
    results: list[str] = []

    def run_pass(left: list[int], attempt: int):
        passes.append(list(left))
        for item in left:
            if item == 3 or (item == 4 and attempt == 1):  # 3 kills its worker every time, 4 only once
                continue
            yield f"{item}@{attempt}"
        if attempt == 1:
            raise rex.NodeDiedError("node gone")  # a pass cut short still counts what it delivered

    with caplog.at_level(logging.WARNING, logger="signclip.jobs.ray_data"):
        lost = in_passes([1, 2, 3, 4], 3, run_pass, results.append,
                         lambda left: [i for i in left if not any(r.startswith(f"{i}@") for r in results)],
                         ("videos", "extracting"))
    assert lost == [3]
    assert passes == [[1, 2, 3, 4], [3, 4], [3]]
    assert results == ["1@1", "2@1", "4@2"]
    assert "2 videos came back without a result (lost with a worker" in caplog.text
    assert "extracting them again (attempt 2 of 3)" in caplog.text
    assert "1 video came back" in caplog.text and "extracting it again (attempt 3 of 3)" in caplog.text
    assert "attempt 4" not in caplog.text  # no promise of a pass that will not run


def test_passes_stop_as_soon_as_nothing_is_left():
    calls = []
    lost = in_passes(["a"], 3, lambda left, attempt: calls.append(attempt) or ["done"], lambda r: None,
                     lambda left: [], ("items", "embedding"))
    assert (lost, calls) == ([], [1])


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
