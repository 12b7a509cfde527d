"""The contract every job keeps, which ``signclip submit`` and the KubeRay RayJobs rely on.

- Exit codes: 0 when every item is ok or skipped, 1 when the run finished but some items failed (the manifest
  says which and why), 2 for usage or configuration errors (nothing was run).
- The same flag names everywhere: ``--address`` (the Ray cluster), ``--output`` (where results go),
  ``--model``; a job's older spellings (``--ray-address``, ``--out``) still work and say they are deprecated.
- Counts are checked as they are parsed (:func:`positive_int`, :func:`count`): ``--attempts 0`` is a usage error.
- From the command line (``python -m signclip.jobs.<name>`` or ``signclip <name>``), Ray's known noise is
  filtered (:mod:`signclip.jobs.ray_noise`).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_OK = 0  # every item ok or skipped
EXIT_ITEMS_FAILED = 1  # the run finished; some items failed
EXIT_USAGE = 2  # bad arguments or configuration; nothing was run
SUMMARY = "summary.json"  # what a run did, beside its outputs

log = logging.getLogger(__name__)


def exit_code(failed: int) -> int:
    """The exit code of a run that finished with ``failed`` failed items."""
    return EXIT_ITEMS_FAILED if failed else EXIT_OK


class Deprecated(argparse.Action):
    """An old spelling of an option: stores into the same destination and says which name to use."""

    def __init__(self, option_strings: list[str], dest: str, preferred: str = "", **kwargs: Any) -> None:
        self.preferred = preferred
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        log.warning("%s is deprecated: use %s", option_string, self.preferred)
        setattr(namespace, self.dest, values)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (counts of actors, rows, passes, ...)."""
    return _integer(text, 1, "a positive integer")


def count(text: str) -> int:
    """An argparse type: an integer >= 0 (where 0 means none, or automatic)."""
    return _integer(text, 0, "an integer >= 0")


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (CPUs per actor or worker, which may be fractions)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0")
    return value


def _integer(text: str, least: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return value


def add_address(parser: argparse.ArgumentParser | Any, old: str | None = None,
                help: str = "Ray cluster address (default: RAY_ADDRESS, else a local Ray)") -> None:
    """``--address`` (and, if the job had one, its ``old`` spelling as a deprecated alias)."""
    parser.add_argument("--address", help=help)
    if old:
        parser.add_argument(old, dest="address", action=Deprecated, preferred="--address", help=argparse.SUPPRESS)


def add_output(parser: argparse.ArgumentParser | Any, help: str, old: str | None = None,
               required: bool = True) -> None:
    """``--output`` (and an ``old`` spelling as a deprecated alias). Required unless the alias is given: with an
    alias, argparse cannot tell, so call :func:`check_output` after parsing."""
    parser.add_argument("--output", help=help, default=None, required=required and not old)
    if old:
        parser.add_argument(old, dest="output", action=Deprecated, preferred="--output", help=argparse.SUPPRESS)
        if required:
            parser.set_defaults(_output_required=True)


def check_output(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` (exit 2) when a required ``--output`` was given under no name."""
    if getattr(args, "_output_required", False) and not args.output:
        parser.error("the following arguments are required: --output")


def write_summary(output: str, summary: dict[str, Any]) -> str:
    """``<output>/summary.json`` (local or URL), written atomically; returns its path."""
    import json

    from signclip.io import storage

    path = storage.join(output, SUMMARY)
    storage.write_bytes_atomic(path, json.dumps(summary, indent=2, default=str).encode())
    return path


def command_line(main: Callable[[list[str] | None], int]) -> NoReturn:
    """Run a job's ``main`` as a command: Ray's known noise filtered, its return value as the exit code."""
    from signclip.jobs.ray_noise import filter_ray_noise

    filter_ray_noise()
    sys.exit(main(None))
