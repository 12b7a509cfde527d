"""The status of one item of a job (a video, a clip, a prompt), in every manifest every job writes."""

from __future__ import annotations

from enum import StrEnum


class ItemStatus(StrEnum):
    """A string enum: its members are plain strings in Parquet, JSON and comparisons (``ItemStatus.OK == "ok"``)."""

    OK = "ok"  # done by this run or an earlier one
    FAILED = "failed"  # not done; the row's ``error`` says why
    SKIPPED = "skipped"  # already done by an earlier run, not redone


OK, FAILED, SKIPPED = ItemStatus.OK, ItemStatus.FAILED, ItemStatus.SKIPPED
STATUSES: tuple[ItemStatus, ...] = tuple(ItemStatus)


def lost_error(doing: str, attempts: int) -> str:
    """The error of an item whose worker died in every pass of a job; ``doing``: ``"extracting this video"``."""
    return (f"worker process died while {doing} (killed, crashed, out of memory or its node lost), "
            f"in each of {attempts} attempt{'s' if attempts > 1 else ''}")
