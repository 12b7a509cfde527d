"""Submit any SignCLIP job to a running Ray cluster through Ray's job API, follow it, exit with its status.

    signclip submit extract --input s3://bucket/videos --output s3://bucket/poses --address http://127.0.0.1:8265
    signclip submit embed --model s3://bucket/models/e7.2 --input s3://bucket/poses --output s3://bucket/emb \\
        --address http://head:8265 --env 'AWS_*' --env SIGNCLIP_CACHE=/tmp/signclip
    signclip submit train --address http://head:8265 --no-wait \\
        -- --train s3://bucket/train.parquet --val s3://bucket/val.parquet --output s3://bucket/runs/small

The job runs as ``python -m signclip.jobs.<JOB> <job args>`` on the cluster, in a runtime environment made of this
checkout (the one ``signclip`` is imported from, wherever the command runs; another with ``--working-dir``, which
must hold the ``signclip/`` package; uploaded without ``.venv/``, ``runs/``, ``.git/``) or of a container image
(``--image``; Ray runs it with Podman, which the nodes then need). Every option this command does not know
goes to the job; after ``--`` everything does (for job options that share a name with ours, such as
``--address``).

The submission id is derived from the job and its arguments (``signclip-<job>-<hash>``; ``--flag=value`` and
``--flag value`` count as the same), so submitting the same job again never starts a duplicate: while it runs,
this command follows the running one; after it succeeded, it reports that (``--rerun`` starts a new attempt
anyway); after it failed or was stopped, it starts the next attempt (``<id>-r2``, ``<id>-r3``, ...). The jobs
themselves skip work already done.

Environment variables reach the job (its driver and every task and actor) only when asked for with
``--env``: ``NAME=VALUE``, ``NAME`` (this shell's value) or a pattern such as ``'AWS_*'``. Their values are
stored in the job's runtime environment, which anyone with access to the dashboard can read: on a shared
cluster give the nodes their own credentials (instance profile, Kubernetes secret) instead.

Exit status: 0 the job succeeded (or was submitted / found, with ``--no-wait``); when it failed, the job's own
code (1: some items failed, 2: a usage error; see :mod:`signclip.jobs.contract`), 1 when it was stopped or its
code is unknown; 2 bad arguments or an unreachable cluster (also when it stops answering while the job is followed:
the job may still be running); 130 interrupted (the job keeps running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("signclip.jobs.submit")

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Never uploaded with the working directory (Ray also honours .gitignore and .rayignore files).
DEFAULT_EXCLUDES = (".venv/", "runs/", ".git/", "__pycache__/", "*.pyc", "*.egg-info/", ".pytest_cache/", ".cache/")
# Job options whose value is where the job writes: a local path there is a path on the cluster's nodes.
OUTPUT_OPTIONS = ("--output", "--out", "--npy-dir", "--poses-dir")
ID_PREFIX = "signclip"
_ATTEMPT = re.compile(r"-r(\d+)$")
# While a job is followed: how often a failed call to the job API is retried, and the first wait (doubling).
API_RETRIES = 5
API_BACKOFF_S = 1.0
T = TypeVar("T")


def job_names() -> list[str]:
    """The jobs this command can submit: the ``signclip.jobs.<name>`` subcommands of the ``signclip`` CLI."""
    from signclip.cli import COMMANDS

    return [name for name, (module, _) in COMMANDS.items() if module == f"signclip.jobs.{name}" and name != "submit"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="signclip submit", usage="signclip submit JOB [job args] [options] [-- job args]",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False)
    p.add_argument("--address", default=None,
                   help=f"the cluster's dashboard / job API (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS, "
                        f"else {DEFAULT_ADDRESS})")
    p.add_argument("--working-dir", default=None,
                   help="directory uploaded as the job's working directory, holding the signclip/ package "
                        "(default: the checkout signclip is imported from); not with --image")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="more files to leave out of the upload (gitignore syntax; repeatable)")
    p.add_argument("--image", default=None,
                   help="run the job in this container image instead of uploading the working directory; "
                        "Ray starts it with podman, which every node then needs (the project image has none)")
    p.add_argument("--env", action="append", default=[], metavar="K=V|K|PATTERN",
                   help="environment variable for the job: NAME=VALUE, NAME (forwards this shell's value) or "
                        "a pattern like 'AWS_*' (forwards every match); repeatable")
    p.add_argument("--pip", action="append", default=[], metavar="SPEC",
                   help="extra pip requirement installed for the job (repeatable); not with --image")
    p.add_argument("--no-wait", action="store_true", help="submit (or find) the job and return at once")
    p.add_argument("--rerun", action="store_true", help="start a new attempt even if an earlier one succeeded")
    p.add_argument("--entrypoint-num-cpus", type=float, default=None,
                   help="CPUs reserved for the job's driver (default: none, it only coordinates)")
    return p


@dataclass
class Submission:
    """What gets submitted: the job, its arguments and how to run it."""

    job: str  # jobs.<job>
    job_args: list[str]  # arguments of the job itself
    address: str | None  # job API address (None: Ray's environment variables, else DEFAULT_ADDRESS)
    runtime_env: dict[str, Any]  # Ray runtime environment of the job
    no_wait: bool = False  # return once submitted
    rerun: bool = False  # new attempt even after a success
    entrypoint_num_cpus: float | None = None  # CPUs reserved for the driver

    @property
    def entrypoint(self) -> str:
        return shlex.join(["python", "-m", f"signclip.jobs.{self.job}", *self.job_args])

    @property
    def base_id(self) -> str:
        return submission_id(self.job, self.job_args)


def submission_id(job: str, job_args: Sequence[str]) -> str:
    """The deterministic id of a job and its arguments: ``signclip-<job>-<16 hex digits>``; ``--flag=value`` and
    ``--flag value`` give the same id."""
    canonical = split_equals(job_args)
    digest = hashlib.sha256(json.dumps([job, canonical], separators=(",", ":")).encode()).hexdigest()
    return f"{ID_PREFIX}-{job}-{digest[:16]}"


def split_equals(job_args: Sequence[str]) -> list[str]:
    """``job_args`` with every ``--flag=value`` as ``--flag``, ``value`` (what argparse reads either way); after a
    bare ``--`` the tokens are positionals and stay as they are."""
    split: list[str] = []
    for i, token in enumerate(job_args):
        if token == "--":
            return split + list(job_args[i:])
        flag, sep, value = token.partition("=")
        split.extend([flag, value] if sep and flag.startswith("--") and len(flag) > 2 else [token])
    return split


def attempt_number(base: str, candidate: str) -> int | None:
    """1 for ``base`` itself, n for ``base-rn``, None for another job's id."""
    if candidate == base:
        return 1
    if candidate.startswith(base):
        match = _ATTEMPT.fullmatch(candidate[len(base):])
        if match and int(match.group(1)) >= 2:
            return int(match.group(1))
    return None


def split_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """(our options, the job's arguments): options this parser knows are ours, the rest and all after ``--``
    belong to the job."""
    ours: list[str] = []
    theirs: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            theirs.extend(argv[i + 1:])
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        action = parser._option_string_actions.get(name) if token.startswith("-") else None
        if action is None:
            theirs.append(token)
        elif action.nargs == 0 or "=" in token:
            ours.append(token)
        else:
            ours.extend(argv[i:i + 2])
            i += 1
        i += 1
    return ours, theirs


def parse_env(specs: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """``--env`` values: NAME=VALUE, NAME (this environment's value) or a pattern (every match)."""
    env: dict[str, str] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not name:
            raise ValueError(f"--env {spec!r}: expected NAME=VALUE, NAME or a pattern such as 'AWS_*'")
        if sep:
            env[name] = value
        elif any(ch in name for ch in "*?["):
            matches = {k: v for k, v in environ.items() if fnmatch.fnmatchcase(k, name)}
            if not matches:
                log.warning("--env %s: no variable of this environment matches", name)
            env.update(matches)
        elif name in environ:
            env[name] = environ[name]
        else:
            raise ValueError(f"--env {name}: not set in this environment (give NAME=VALUE)")
    return env


def checkout_root() -> Path | None:
    """The source checkout ``signclip`` is imported from (pyproject.toml beside signclip/); None when it is an
    installed package."""
    import signclip

    root = Path(signclip.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "signclip").is_dir() else None


def working_dir(given: str | None) -> str:
    """The directory to upload: ``given``, else this checkout; it must hold the ``signclip/`` package the job runs
    from (without it the job fails with "No module named signclip", which reads as "some items failed")."""
    if given is None:
        root = checkout_root()
        if root is None:
            import signclip

            raise ValueError(f"no --working-dir given and signclip ({Path(signclip.__file__).parent}) is not in a "
                             f"source checkout: give --working-dir CHECKOUT or --image IMAGE")
        return str(root)
    if not os.path.isdir(given):
        raise ValueError(f"--working-dir {given}: no such directory")
    if not os.path.isfile(os.path.join(given, "signclip", "__init__.py")):
        raise ValueError(f"--working-dir {given}: no signclip/ package in it, so the job could not import "
                         f"signclip; give the checkout's root (or --image IMAGE)")
    return given


def make_runtime_env(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The job's runtime environment: an image or the working directory, pip extras, env vars."""
    runtime_env: dict[str, Any] = {}
    if args.image:
        if args.pip or args.exclude:
            raise ValueError("--image cannot be combined with --pip or --exclude (Ray runs an image as it is)")
        runtime_env["image_uri"] = args.image
    else:
        runtime_env["working_dir"] = working_dir(args.working_dir)
        runtime_env["excludes"] = [*DEFAULT_EXCLUDES, *args.exclude]
        if args.pip:
            runtime_env["pip"] = list(args.pip)
    env = parse_env(args.env, environ)
    if env:
        runtime_env["env_vars"] = env
    return runtime_env


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Submission:
    """The submission ``argv`` describes; raises ``SystemExit`` (argparse) or ``ValueError`` on bad input."""
    parser = build_parser()
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        raise SystemExit(0 if argv else 2)
    job, rest = argv[0], argv[1:]
    names = job_names()
    if job not in names:
        parser.error(f"unknown job {job!r}; one of: {', '.join(names)}")
    ours, job_args = split_argv(rest, parser)
    args = parser.parse_args(ours)
    runtime_env = make_runtime_env(args, os.environ if environ is None else environ)
    return Submission(job=job, job_args=job_args, address=args.address, runtime_env=runtime_env,
                      no_wait=args.no_wait, rerun=args.rerun, entrypoint_num_cpus=args.entrypoint_num_cpus)


def warn_about_paths(sub: Submission) -> None:
    """Local paths in a job's arguments name files on the cluster's nodes, not on this machine."""
    args = split_equals(sub.job_args)
    for flag, value in zip(args, args[1:]):
        if flag in OUTPUT_OPTIONS and "://" not in value:
            log.warning("%s %s is a local path: the job writes it on the cluster's nodes (inside the job's "
                        "temporary working directory when relative), not here; use s3://...", flag, value)
    for value in args:
        if os.path.isabs(value):
            log.warning("%s: an absolute path must exist on every node of the cluster", value)


# ---------------------------------------------------------------------------------------------- the job API

@contextlib.contextmanager
def _explicit_address(address: str | None) -> Iterator[None]:
    """Ray lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override an explicit address; here --address wins."""
    names = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
    saved = {n: os.environ.pop(n) for n in names if address and n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str | None) -> Any:
    """A ``JobSubmissionClient`` for ``address`` (default: Ray's environment variables, else localhost)."""
    from ray.job_submission import JobSubmissionClient

    if address is None and not (os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")):
        address = DEFAULT_ADDRESS
    with _explicit_address(address):
        return JobSubmissionClient(address)


def attempts(client: Any, base: str) -> list[tuple[int, Any]]:
    """Earlier attempts of the job ``base`` on the cluster: (attempt number, JobDetails), oldest first."""
    found = []
    for details in client.list_jobs():
        number = attempt_number(base, details.submission_id or "")
        if number is not None:
            found.append((number, details))
    return sorted(found, key=lambda pair: pair[0])


def start_or_find(client: Any, sub: Submission) -> tuple[str | None, str]:
    """(submission id to follow, what happened). The id is None when there is nothing to follow."""
    from ray.job_submission import JobStatus

    base = sub.base_id
    earlier = attempts(client, base)
    number = 1
    if earlier:
        last_number, last = earlier[-1]
        status = JobStatus(last.status)
        if not status.is_terminal():
            return last.submission_id, f"{last.submission_id} is already {status.value}: following it"
        if status == JobStatus.SUCCEEDED and not sub.rerun:
            return None, f"{last.submission_id} already SUCCEEDED; not starting it again (--rerun to force)"
        number = last_number + 1
        log.info("%s ended %s; starting attempt %d", last.submission_id, status.value, number)
    new_id = base if number == 1 else f"{base}-r{number}"
    metadata = {"signclip.job": sub.job, "signclip.args": json.dumps(sub.job_args), "signclip.attempt": str(number)}
    try:
        client.submit_job(entrypoint=sub.entrypoint, submission_id=new_id, runtime_env=sub.runtime_env,
                          metadata=metadata, entrypoint_num_cpus=sub.entrypoint_num_cpus)
    except RuntimeError as e:
        if "already exists" not in str(e):
            raise
        # submitted at the same moment by someone else: follow theirs
        return new_id, f"{new_id} was submitted concurrently: following it"
    return new_id, f"submitted {new_id}: {sub.entrypoint}"


class LostContact(Exception):
    """The job API stopped answering about a job, retries included; the job itself may still be running."""


def api_errors() -> tuple[type[BaseException], ...]:
    """What a dashboard restart or a network blip raises in the job API: the SDK's RuntimeError, requests' and
    aiohttp's connection errors (OSError subclasses; aiohttp's others derive from ClientError only)."""
    import aiohttp

    return RuntimeError, OSError, aiohttp.ClientError


def retrying(call: Callable[[], T], what: str, retries: int = API_RETRIES, backoff_s: float = API_BACKOFF_S) -> T:
    """``call()``, retried ``retries`` times on ``api_errors()`` with a doubling wait; else ``LostContact``."""
    for attempt in range(retries):
        try:
            return call()
        except api_errors() as e:
            wait = backoff_s * 2 ** attempt
            log.warning("%s failed (%s: %s); retrying in %g s", what, type(e).__name__, e, wait)
            time.sleep(wait)
    try:
        return call()
    except api_errors() as e:
        raise LostContact(f"{what} failed {retries + 1} times, last with {type(e).__name__}: {e}") from e


async def _tail(client: Any, job_id: str, out: Any) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def follow(client: Any, job_id: str, out: Any = None, poll_s: float = 1.0, retries: int = API_RETRIES,
           backoff_s: float = API_BACKOFF_S) -> Any:
    """Stream the job's logs to ``out`` until it ends; its final ``JobStatus``. Raises ``LostContact`` when the
    job API stops answering (after ``retries`` retries of one status poll)."""
    out = out or sys.stdout
    try:
        asyncio.run(_tail(client, job_id, out))
    except api_errors() as e:  # the log stream broke off; the job itself may still be running
        log.warning("log stream of %s interrupted (%s: %s); waiting for the job to end", job_id, type(e).__name__, e)
    while True:
        status = retrying(lambda: client.get_job_status(job_id), f"status of {job_id}", retries, backoff_s)
        if status.is_terminal():
            return status
        time.sleep(poll_s)


def keeps_running(job_id: str) -> str:
    """How to get back to a job this command stopped following."""
    return f"run the same command to follow it again, `ray job stop {job_id}` to stop it"


def main(argv: list[str] | None = None) -> int:
    try:
        sub = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0)
    warn_about_paths(sub)
    from ray.job_submission import JobStatus

    try:
        client = connect(sub.address)
        job_id, what = start_or_find(client, sub)
    except (OSError, RuntimeError, ValueError) as e:  # OSError: requests' connection errors too
        print(f"error: cannot submit to {sub.address or 'the Ray cluster'}: {e}", file=sys.stderr)
        return 2
    print(f"[signclip submit] {what}", file=sys.stderr)
    if job_id is None:
        return 0
    if sub.no_wait:
        print(job_id)
        return 0
    try:
        status = follow(client, job_id)
        info = retrying(lambda: client.get_job_info(job_id), f"details of {job_id}")
    except KeyboardInterrupt:
        print(f"\n[signclip submit] {job_id} keeps running on the cluster: {keeps_running(job_id)}", file=sys.stderr)
        return 130
    except LostContact as e:
        print(f"error: lost contact with {sub.address or 'the Ray cluster'} ({e}); {job_id} may still be running "
              f"on the cluster: {keeps_running(job_id)}", file=sys.stderr)
        return 2
    message = info.message or ""
    print(f"[signclip submit] {job_id} {status.value}{': ' + message if message else ''}", file=sys.stderr)
    if status == JobStatus.SUCCEEDED:
        return 0
    # the job's own code (1: some items failed, 2: usage), so that scripts read the job contract through submit
    return info.driver_exit_code if info.driver_exit_code in (1, 2) else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
