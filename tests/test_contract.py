"""The job contract: the same flags and exit codes in every job, and Ray's known error-level noise filtered."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from signclip.jobs import contract


def test_every_job_takes_address_and_output_and_the_old_spellings_still_work(caplog):
    from signclip.jobs import embed, evaluate, manifest, train

    opts = embed.options(["--model", "m", "--input", "i", "--output", "o", "--address", "ray://h:10001"])
    assert (opts.output, opts.address) == ("o", "ray://h:10001")
    with caplog.at_level("WARNING"):
        opts = embed.options(["--model", "m", "--input", "i", "--output", "o", "--ray-address", "auto"])
    assert opts.address == "auto" and "--ray-address is deprecated: use --address" in caplog.text
    args = evaluate.parser().parse_args(["--embeddings", "e", "--output", "o", "--ray-address", "auto"])
    assert args.address == "auto"
    with caplog.at_level("WARNING"):
        args = train.parse_args(["--train", "t", "--val", "v", "--out", "runs/x", "--address", "auto"])
    assert (args.output, args.address) == ("runs/x", "auto") and "--out is deprecated: use --output" in caplog.text
    assert train.parse_args(["--train", "t", "--val", "v", "--output", "runs/y"]).output == "runs/y"
    p = manifest.parser()
    assert p.parse_args(["asl_citizen", "--root", "r", "--out", "d"]).output == "d"


def _parsers() -> dict:
    from signclip.jobs import embed, evaluate, extract, search, serve, train

    return {"embed": (lambda a: embed.parser().parse_args(a), ["--model", "m", "--input", "i", "--output", "o"]),
            "evaluate": (lambda a: evaluate.parser().parse_args(a), ["--embeddings", "e", "--output", "o"]),
            "extract": (lambda a: extract.build_parser().parse_args(a), ["--input", "i", "--output", "o"]),
            "search": (lambda a: search.parser().parse_args(a), ["--embeddings", "e", "query"]),
            "serve": (serve.parse_args, ["--model", "default=m"]),
            "train": (train.parse_args, ["--train", "t", "--val", "v", "--output", "o"])}


@pytest.mark.parametrize("job", ["embed", "evaluate", "extract", "serve", "train"])  # search runs without Ray
def test_every_ray_job_joins_a_cluster_by_address(job):
    parse, argv = _parsers()[job]
    assert parse([*argv, "--address", "ray://head:10001"]).address == "ray://head:10001"


@pytest.mark.parametrize("job, flag, value", [("embed", "--attempts", "0"), ("extract", "--attempts", "0"),
                                              ("embed", "--batch-size", "-4"), ("evaluate", "--knn-k", "0"),
                                              ("search", "--top", "0"), ("train", "--epochs", "zero"),
                                              ("train", "--warmup-steps", "-1"), ("serve", "--num-cpus", "0"),
                                              ("extract", "--cpus-per-actor", "0"),
                                              ("extract", "--cpus-per-actor", "nan"),
                                              ("train", "--cpus-per-worker", "-1"), ("train", "--data-cpus", "inf")])
def test_counts_out_of_range_are_usage_errors_that_name_the_flag(job, flag, value, capsys):
    parse, argv = _parsers()[job]
    with pytest.raises(SystemExit) as info:
        parse([*argv, flag, value])
    assert info.value.code == contract.EXIT_USAGE
    assert re.search(rf"argument (-\w/)?{flag}: '{value}': expected", capsys.readouterr().err)


def test_count_types_accept_their_least_value():
    assert (contract.positive_int("1"), contract.count("0"), contract.count("12")) == (1, 0, 12)
    assert (contract.positive_number("0.25"), contract.positive_number("2")) == (0.25, 2.0)


@pytest.mark.parametrize("argv", [["--train", "t", "--val", "v"], ["--model", "m", "--input", "i"]])
def test_a_missing_output_is_a_usage_error(argv, capsys):
    from signclip.jobs import embed, train

    with pytest.raises(SystemExit) as info:
        (train.parse_args if argv[0] == "--train" else embed.options)(argv)
    assert info.value.code == contract.EXIT_USAGE and "--output" in capsys.readouterr().err


def test_exit_codes():
    assert (contract.exit_code(0), contract.exit_code(3)) == (contract.EXIT_OK, contract.EXIT_ITEMS_FAILED) == (0, 1)
    assert contract.EXIT_USAGE == 2


def test_ray_noise_filter_drops_exactly_the_known_line():
    code = textwrap.dedent("""
        import os, sys
        from signclip.jobs.ray_noise import filter_ray_noise
        filter_ray_noise()
        os.write(2, b"[2026-12-01 22:07:20,610 E 1 1] core_worker.cc:99: something else went wrong\\n")
        print("a python warning", file=sys.stderr)
        print("a table row")
        print("\\x1b[33m(raylet)\\x1b[0m Task ServeController.graceful_shutdown failed. There are infinite retries "
              "remaining, so the task will be retried. Error: The actor is dead because it was killed by `ray.kill`.")
        print("the last row", end="")
        raise SystemExit("the last words")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == "a table row\nthe last row", done.stdout  # the raylet's line, printed to stdout, is gone
    assert "something else went wrong" in done.stderr and "a python warning" in done.stderr
    assert done.stderr.rstrip().endswith("the last words")
