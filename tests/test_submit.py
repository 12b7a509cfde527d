"""``signclip submit`` (signclip/jobs/submit.py) against an in-memory job API: ids, deduplication, runtime
environments, log following and exit codes. No Ray runs here; tests/test_multinode.py submits for real."""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import requests
from ray.job_submission import JobStatus

import signclip
from signclip.jobs import submit

pytestmark = pytest.mark.timeout(60)

ARGS = ["--input", "s3://b/videos", "--output", "s3://b/poses"]


class FakeJobs:
    """The part of ``JobSubmissionClient`` that submit uses; each submitted job ends with ``outcome``."""

    def __init__(self, outcome: JobStatus = JobStatus.SUCCEEDED) -> None:
        self.jobs: dict[str, SimpleNamespace] = {}
        self.submitted: list[dict[str, Any]] = []
        self.outcome = outcome
        self.exit_code: int | None = None  # the job driver's exit code when it ends (None: unknown)
        self.raise_exists = False

    def add(self, submission_id: str, status: JobStatus) -> None:
        self.jobs[submission_id] = SimpleNamespace(submission_id=submission_id, status=status, message="",
                                                   driver_exit_code=None)

    def list_jobs(self) -> list[SimpleNamespace]:
        return list(self.jobs.values())

    def submit_job(self, **kwargs: Any) -> str:
        if self.raise_exists:
            self.add(kwargs["submission_id"], JobStatus.RUNNING)
            raise RuntimeError(f"Job with submission_id {kwargs['submission_id']} already exists.")
        assert kwargs["submission_id"] not in self.jobs
        self.submitted.append(kwargs)
        self.add(kwargs["submission_id"], JobStatus.PENDING)
        return kwargs["submission_id"]

    async def tail_job_logs(self, job_id: str):
        yield f"log of {job_id}\n"
        job = self.jobs[job_id]
        if not job.status.is_terminal():
            job.status = self.outcome
            job.message = f"Job finished with {self.outcome.value}"
            job.driver_exit_code = self.exit_code

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.jobs[job_id].status

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        return self.jobs[job_id]


@pytest.fixture
def jobs(monkeypatch) -> FakeJobs:
    fake = FakeJobs()
    monkeypatch.setattr(submit, "connect", lambda address: fake)
    return fake


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A directory submit accepts as the job's working directory: it holds the signclip/ package."""
    (tmp_path / "signclip").mkdir()
    (tmp_path / "signclip" / "__init__.py").write_text("")
    return tmp_path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = submit.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_submits_the_job_and_follows_it(jobs, capsys, workdir):
    rc, out, err = run(["extract", *ARGS, "--address", "http://127.0.0.1:8265", "--working-dir", str(workdir)],
                       capsys)
    assert rc == 0
    (sent,) = jobs.submitted
    base = submit.submission_id("extract", ARGS)
    assert sent["submission_id"] == base and base.startswith("signclip-extract-")
    assert sent["entrypoint"] == "python -m signclip.jobs.extract --input s3://b/videos --output s3://b/poses"
    env = sent["runtime_env"]
    assert env["working_dir"] == str(workdir)
    assert {".venv/", "runs/", ".git/"} <= set(env["excludes"])
    assert "env_vars" not in env
    assert f"log of {base}" in out and "SUCCEEDED" in err


def test_same_job_is_never_started_twice(jobs, capsys, workdir):
    argv = ["embed", "--model", "s3://b/m", "--input", "s3://b/p", "--output", "s3://b/e",
            "--working-dir", str(workdir)]
    assert run(argv, capsys)[0] == 0
    rc, _, err = run(argv, capsys)  # after success: reported, not resubmitted
    assert rc == 0 and "already SUCCEEDED" in err and len(jobs.submitted) == 1
    rc, _, _ = run(argv + ["--rerun"], capsys)  # unless asked
    assert rc == 0 and [s["submission_id"][-3:] for s in jobs.submitted][1] == "-r2"
    other = argv[:-2] + ["--output", "s3://b/other", "--working-dir", str(workdir)]
    run(other, capsys)  # other arguments: another job
    assert len({s["submission_id"].split("-r")[0] for s in jobs.submitted}) == 2


def test_running_job_is_followed_not_duplicated(jobs, capsys, workdir):
    base = submit.submission_id("extract", ARGS)
    jobs.add(base, JobStatus.RUNNING)
    rc, out, err = run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)
    assert rc == 0 and not jobs.submitted
    assert "already RUNNING: following it" in err and f"log of {base}" in out


def test_failed_job_gets_a_new_attempt_and_failure_exits_1(jobs, capsys, workdir):
    base = submit.submission_id("extract", ARGS)
    jobs.add(base, JobStatus.FAILED)
    jobs.add(f"{base}-r2", JobStatus.STOPPED)
    jobs.add(f"{base}x-r9", JobStatus.RUNNING)  # another job's id, not an attempt of this one
    jobs.outcome = JobStatus.FAILED
    rc, _, err = run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)
    assert rc == 1 and jobs.submitted[0]["submission_id"] == f"{base}-r3"
    assert jobs.submitted[0]["metadata"]["signclip.attempt"] == "3" and "FAILED" in err
    jobs.outcome = JobStatus.STOPPED
    assert run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)[0] == 1


@pytest.mark.parametrize("code", [1, 2])
def test_a_failed_job_exits_with_the_jobs_own_code(jobs, capsys, workdir, code):
    """The job contract reaches the caller through submit: 1 some items failed, 2 a usage error."""
    jobs.outcome, jobs.exit_code = JobStatus.FAILED, code
    assert run(["embed", *ARGS, "--working-dir", str(workdir)], capsys)[0] == code


def test_no_wait_prints_the_id(jobs, capsys, workdir):
    rc, out, _ = run(["train", "--train", "s3://b/t.parquet", "--no-wait", "--working-dir", str(workdir)], capsys)
    assert rc == 0 and out.strip() == jobs.submitted[0]["submission_id"]
    assert jobs.jobs[out.strip()].status == JobStatus.PENDING  # not followed


def test_concurrent_submission_is_followed(jobs, capsys, workdir):
    jobs.raise_exists = True
    rc, _, err = run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)
    assert rc == 0 and "submitted concurrently" in err


def test_env_vars_are_forwarded_only_when_asked(jobs, capsys, workdir, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-1")
    monkeypatch.setenv("SIGNCLIP_CACHE", "/tmp/c")
    argv = ["extract", *ARGS, "--working-dir", str(workdir), "--env", "AWS_*", "--env", "SIGNCLIP_CACHE",
            "--env", "AWS_ENDPOINT_URL=http://127.0.0.1:9000"]
    assert run(argv, capsys)[0] == 0
    env = jobs.submitted[0]["runtime_env"]["env_vars"]
    assert env["AWS_ACCESS_KEY_ID"] == "id-1" and env["AWS_SECRET_ACCESS_KEY"] == "secret-1"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000" and env["SIGNCLIP_CACHE"] == "/tmp/c"
    assert "HOME" not in env
    # the id depends on the job and its arguments, not on credentials
    assert jobs.submitted[0]["submission_id"] == submit.submission_id("extract", ARGS)
    monkeypatch.delenv("SIGNCLIP_CACHE")
    rc, _, err = run(["extract", *ARGS, "--working-dir", str(workdir), "--env", "SIGNCLIP_CACHE"], capsys)
    assert rc == 2 and "not set" in err


def test_image_runtime_env(jobs, capsys):
    rc, _, _ = run(["embed", "--model", "s3://b/m", "--input", "s3://b/p", "--output", "s3://b/e",
                    "--image", "ghcr.io/signclip/signclip:0.1.0", "--env", "A=1"], capsys)
    assert rc == 0
    assert jobs.submitted[0]["runtime_env"] == {"image_uri": "ghcr.io/signclip/signclip:0.1.0", "env_vars": {"A": "1"}}
    rc, _, err = run(["embed", "--image", "x:1", "--pip", "requests"], capsys)
    assert rc == 2 and "--image" in err


def test_options_after_double_dash_go_to_the_job(jobs, capsys, workdir):
    rc, _, _ = run(["extract", "--address", "http://h:8265", "--working-dir", str(workdir), "--",
                    "--input", "v", "--output", "s3://b/p", "--address", "auto"], capsys)
    assert rc == 0
    entrypoint = "python -m signclip.jobs.extract --input v --output s3://b/p --address auto"
    assert jobs.submitted[0]["entrypoint"] == entrypoint


def test_bad_usage_exits_2(jobs, capsys, tmp_path):
    assert run(["nonsense"], capsys)[0] == 2
    assert run([], capsys)[0] == 2
    assert run(["extract", "--working-dir", str(tmp_path / "missing")], capsys)[0] == 2
    assert run(["--help"], capsys)[0] == 0
    assert not jobs.submitted


@pytest.mark.parametrize("output", [["--output", "runs/poses"], ["--output=runs/poses"]])
def test_local_output_paths_are_warned_about(jobs, capsys, workdir, caplog, output):
    run(["extract", "--input", "s3://b/v", *output, "--working-dir", str(workdir)], capsys)
    assert any("--output runs/poses is a local path" in r.getMessage() for r in caplog.records)


def test_flag_equals_value_is_the_same_job_as_flag_space_value(jobs, capsys, workdir):
    spaced = ["--input", "s3://b/v", "--output", "s3://b/p", "--attempts", "2"]
    joined = ["--input=s3://b/v", "--output=s3://b/p", "--attempts", "2"]
    assert submit.submission_id("extract", joined) == submit.submission_id("extract", spaced)
    # after a bare -- the job reads positionals, where "--a=b" is one value and "--a", "b" two
    assert submit.submission_id("extract", ["--", "--a=b"]) != submit.submission_id("extract", ["--", "--a", "b"])
    jobs.add(submit.submission_id("extract", spaced), JobStatus.RUNNING)
    rc, _, err = run(["extract", *joined, "--working-dir", str(workdir)], capsys)
    assert rc == 0 and "already RUNNING: following it" in err and not jobs.submitted


def test_working_dir_defaults_to_this_checkout_wherever_submit_runs(jobs, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: uploading it would give "No module named signclip"
    assert run(["extract", *ARGS], capsys)[0] == 0
    root = Path(signclip.__file__).resolve().parents[1]
    assert jobs.submitted[0]["runtime_env"]["working_dir"] == str(root) and (root / "pyproject.toml").is_file()


def test_working_dir_without_the_package_is_refused(jobs, capsys, tmp_path):
    rc, _, err = run(["extract", *ARGS, "--working-dir", str(tmp_path)], capsys)
    assert rc == 2 and f"--working-dir {tmp_path}: no signclip/ package" in err and not jobs.submitted
    # an image brings the package itself
    assert run(["extract", *ARGS, "--working-dir", str(tmp_path), "--image", "x:1"], capsys)[0] == 0


def test_installed_signclip_needs_a_working_dir(jobs, capsys, tmp_path, monkeypatch):
    installed = tmp_path / "site-packages" / "signclip" / "__init__.py"
    installed.parent.mkdir(parents=True)
    monkeypatch.setattr(signclip, "__file__", str(installed))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["extract", *ARGS], capsys)
    assert rc == 2 and "not in a source checkout" in err and str(installed.parent) in err and not jobs.submitted


def test_explicit_address_wins_over_ray_address(monkeypatch):
    seen = {}

    class Client:
        def __init__(self, address):
            seen["address"], seen["env"] = address, os.environ.get("RAY_ADDRESS")

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", Client)
    monkeypatch.setenv("RAY_ADDRESS", "http://elsewhere:8265")
    submit.connect("http://127.0.0.1:9999")
    assert seen == {"address": "http://127.0.0.1:9999", "env": None}
    assert os.environ["RAY_ADDRESS"] == "http://elsewhere:8265"
    submit.connect(None)  # no --address: Ray's own variables decide
    assert seen["env"] == "http://elsewhere:8265"


def test_follow_survives_a_broken_log_stream():
    class Broken(FakeJobs):
        async def tail_job_logs(self, job_id):
            yield "partial\n"
            raise RuntimeError("WebSocket connection closed unexpectedly")

    fake = Broken()
    fake.add("j", JobStatus.SUCCEEDED)
    out = io.StringIO()
    assert submit.follow(fake, "j", out=out, poll_s=0.01) == JobStatus.SUCCEEDED
    assert out.getvalue() == "partial\n"


class Restarting(FakeJobs):
    """A dashboard that goes away while the job runs: the log stream drops, then the next ``status_failures``
    status polls and ``info_failures`` job lookups fail."""

    def __init__(self, status_failures: int, info_failures: int = 0) -> None:
        super().__init__()
        self.failures = {"status": status_failures, "info": info_failures}

    async def tail_job_logs(self, job_id: str):
        yield "partial\n"
        self.jobs[job_id].status = JobStatus.SUCCEEDED  # the job ends meanwhile
        raise aiohttp.ServerDisconnectedError()

    def _blip(self, call: str) -> None:
        if self.failures[call]:
            self.failures[call] -= 1
            raise requests.exceptions.ConnectionError("Connection refused")

    def get_job_status(self, job_id: str) -> JobStatus:
        self._blip("status")
        return super().get_job_status(job_id)

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        self._blip("info")
        return super().get_job_info(job_id)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(submit.time, "sleep", waits.append)
    return waits


def test_following_rides_out_a_dashboard_restart(monkeypatch, capsys, workdir, sleeps):
    fake = Restarting(status_failures=2, info_failures=1)
    monkeypatch.setattr(submit, "connect", lambda address: fake)
    rc, out, err = run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)
    assert rc == 0 and out == "partial\n" and "SUCCEEDED" in err
    backoff = submit.API_BACKOFF_S
    assert sleeps == [backoff, 2 * backoff, backoff]  # doubling, from the start again for each call


def test_a_cluster_that_stays_away_exits_2_and_says_the_job_may_still_run(monkeypatch, capsys, workdir, sleeps):
    fake = Restarting(status_failures=10**6)
    monkeypatch.setattr(submit, "connect", lambda address: fake)
    rc, _, err = run(["extract", *ARGS, "--working-dir", str(workdir)], capsys)
    job_id = submit.submission_id("extract", ARGS)
    assert rc == 2 and len(sleeps) == submit.API_RETRIES
    assert f"{job_id} may still be running" in err and "run the same command to follow it again" in err
    assert "Traceback" not in err
