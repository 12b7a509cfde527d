"""Video -> pose throughput: this Ray job against pose-format's own tools and the hardware limit.

    .venv/bin/python tests/benchmarks/bench_extract.py --copies 12 --cpus 2

Builds a corpus of copies of the real sample videos in a temporary folder (2 x ``--copies`` videos) and
measures, each in a fresh process, frames per second of:

  (a) pose-format's ``pose_video`` (what ``video_to_pose`` runs), once per video, in one process;
  (b) pose-format's parallel CLI ``videos_to_poses --num-workers N`` (N = ``--cpus``);
  (c) this job (``signclip.jobs.extract.run``) on a local Ray with ``--cpus`` CPUs (Ray's start-up excluded; reported);
  (w) the same job on a Ray that has already run an extraction, as on a long-running cluster: Ray Data's
      per-cluster helper actors (stats, autoscaling coordinator, actor locations) are up; its actor
      pool still starts from nothing;
  (d) the limit: N processes that only run ``Holistic.process`` (exact reset between videos, as (c) does)
      on frames decoded beforehand, timed from a common start.

Prints every rate and the ratios (c)/(b) and (c)/(d), and what each run cost the whole machine per frame
(busy CPU-s from /proc/stat, Ray's own processes included). On N saturated cores a run cannot go faster
than N / that cost, so the ratio of costs bounds the ratio of rates. ``--by-process`` also splits (c)'s
and (w)'s CPU by kind of process (map workers, driver, Ray Data's helper actors, GCS, raylet, ...).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def make_corpus(folder: Path, copies: int) -> list[Path]:
    """``copies`` copies of each real sample video, spread over two sub-folders."""
    from signclip.io import sample_data

    videos = sorted((sample_data.data_dir() / "videos").glob("*.mp4"))
    made = []
    for i in range(copies):
        for video in videos:
            target = folder / f"part{i % 2}" / f"{video.stem}-{i:03d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(video, target)
            made.append(target)
    return made


def count_frames(videos: list[Path]) -> int:
    from signclip.extraction.video import open_video

    total = 0
    for v in videos:
        with open_video(str(v)) as stream:
            total += sum(1 for _ in stream)
    return total


# ------------------------------------------------------------------------------------ the measured workers

def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process, Ray's included).

    user + nice + system + irq + softirq from /proc/stat: idle, I/O wait and time stolen by the
    hypervisor are left out. A run's difference is what it cost the machine, wherever it ran.
    """
    import os

    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class ProcessCpu:
    """CPU seconds each kind of process spends while the block runs (every process on the machine).

    Samples /proc every ``interval`` seconds, so a process that exits loses at most its last interval.
    Kinds: Ray's process titles (``ray::MapWorker``, ``ray::_StatsActor``, ...), else the program's name;
    this process is ``driver``.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import os
        import threading

        self._interval, self._me = interval, os.getpid()
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid = int(stat.parent.name)
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue  # exited meanwhile
            seen[pid] = (self._kind(pid, cmd), (int(fields[11]) + int(fields[12])) / self._ticks)
        return seen

    def _kind(self, pid: int, cmd: list[bytes]) -> str:
        if pid == self._me:
            return "driver"
        title = cmd[0].decode(errors="replace")
        if title.startswith("ray::"):  # Ray retitles actors: ray::Class, ray::Class.method, ray::Name(...)
            return title.split("(", 1)[0].split(" ", 1)[0].split(".", 1)[0]
        words = [w.decode(errors="replace") for w in cmd if w]
        if not words:  # kernel threads
            return "kernel"
        script = next((w for w in words[1:] if w.endswith(".py")), None)
        return Path(script or words[0]).name

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._last.update(self._sample())

    def __enter__(self) -> "ProcessCpu":
        self._last = self._sample()
        self._first = {pid: cpu for pid, (_, cpu) in self._last.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())

    def by_kind(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (kind, cpu) in self._last.items():
            spent = cpu - self._first.get(pid, 0.0)
            if spent > 0:
                totals[kind] = totals.get(kind, 0.0) + spent
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def worker_a(corpus: Path, out: Path) -> dict:
    import contextlib
    import io

    from pose_format.bin.pose_estimation import pose_video

    videos = sorted(corpus.rglob("*.mp4"))
    start, busy = time.perf_counter(), machine_busy_seconds()
    for v in videos:
        with contextlib.redirect_stdout(io.StringIO()):
            pose_video(str(v), str(out / f"{v.parent.name}-{v.stem}.pose"), "mediapipe",
                       {"model_complexity": 1}, progress=False)
    return {"seconds": time.perf_counter() - start, "busy_seconds": machine_busy_seconds() - busy}


def worker_c(corpus: Path, out: Path, cpus: int, options: dict, warm: bool = False,
             by_process: bool = False) -> dict:
    import contextlib
    import logging
    import os

    import ray

    from signclip.io import manifests
    from signclip.jobs.extract import ExtractConfig, run

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - t
    if warm:  # a first, one-video job leaves Ray Data's detached helper actors running
        first = next(corpus.rglob("*.mp4"))
        run(ExtractConfig(input=str(first), output=str(out.parent / f"{out.name}-warm-up"), progress=False))
    config = ExtractConfig(input=str(corpus), output=str(out), progress=False, **options)
    sampler = ProcessCpu() if by_process else contextlib.nullcontext()
    busy = machine_busy_seconds()
    with sampler:
        summary = run(config)
    busy = machine_busy_seconds() - busy
    ray.shutdown()
    rows = manifests.read_manifest(summary.manifest_path)
    start = rows["started_at"].min().timestamp()
    end = max(r.started_at.timestamp() + r.seconds for r in rows.itertuples())
    return {"seconds": summary.seconds, "ray_init_seconds": ray_start, "ok": summary.ok, "failed": summary.failed,
            "steady_seconds": end - start, "busy_seconds": busy,
            "by_process": sampler.by_kind() if by_process else {}}


def _limit_process(videos: list[str], barrier, results) -> None:
    from signclip.extraction.holistic import HolisticRunner
    from signclip.extraction.video import open_video

    decoded = []
    for v in videos:
        with open_video(v) as stream:
            decoded.append(list(stream))
    runner = HolisticRunner()
    runner.start()
    barrier.wait()
    start, busy = time.perf_counter(), machine_busy_seconds()
    frames = 0
    for video in decoded:
        runner.reset()
        for frame in video:
            runner.process(frame)
            frames += 1
    results.put({"frames": frames, "start": start, "end": time.perf_counter(),
                 "busy_start": busy, "busy_end": machine_busy_seconds()})


def worker_d(corpus: Path, cpus: int) -> dict:
    import multiprocessing as mp

    videos = [str(v) for v in sorted(corpus.rglob("*.mp4"))]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(cpus), ctx.Queue()
    procs = [ctx.Process(target=_limit_process, args=(videos[i::cpus], barrier, results)) for i in range(cpus)]
    for p in procs:
        p.start()
    got = []
    while len(got) < len(procs):
        try:
            got.append(results.get(timeout=5))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.terminate()
                raise RuntimeError("a limit process failed (see its traceback above)") from None
    for p in procs:
        p.join()
    return {"seconds": max(g["end"] for g in got) - min(g["start"] for g in got),
            "frames": sum(g["frames"] for g in got),
            # the machine-wide counter read by the first process to start and the last to finish
            "busy_seconds": max(g["busy_end"] for g in got) - min(g["busy_start"] for g in got)}


# ------------------------------------------------------------------------------------ orchestration

LABELS = {
    "a": "(a) video_to_pose per video, one process:",
    "b": "(b) videos_to_poses --num-workers {n}:",
    "c": "(c) signclip.jobs.extract on {n} CPUs:",
    "w": "(w) signclip.jobs.extract, Ray already running a job before:",
    "d": "(d) limit: {n} processes x Holistic.process only:",
}
LOAD_BEFORE: list[float] = []
STEADY: dict[str, float] = {}  # (c) without the actor pool's start-up
VARIANT: dict[str, int] = {}  # which of the --job-options variants the next (c) runs
BUSY_PER_FRAME: dict[str, list[float]] = {}  # machine CPU-s per frame of every run, by kind


def _note_load() -> None:
    import os

    LOAD_BEFORE.append(os.getloadavg()[0])


def _busy(kind: str, busy_seconds: float, frames: int) -> str:
    """Notes and describes what a run cost the whole machine per frame."""
    per_frame = busy_seconds / frames
    BUSY_PER_FRAME.setdefault(kind, []).append(per_frame)
    return f"machine busy {busy_seconds:.0f} CPU-s = {1000 * per_frame:.1f} ms/frame"


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished descendant process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_a(work: Path, corpus: Path, frames: int, args) -> tuple[float, str]:
    work.mkdir(parents=True)
    _note_load()
    r = _run_worker("a", str(corpus), str(work))
    return frames / r["seconds"], (f"({r['seconds']:.1f} s; {r['cpu_seconds']:.0f} CPU-s in all; "
                                   f"{_busy('a', r['busy_seconds'], frames)})")


def measure_b(work: Path, corpus: Path, frames: int, args) -> tuple[float, str]:
    shutil.copytree(corpus, work)
    # the `videos_to_poses` console script's own entry point: an interpreter without pose-format installed
    # (the GPU machine, where it travels as files) has no console script
    cli = [sys.executable, "-c", "import sys; from pose_format.bin.directory import main; "
           "sys.argv[0] = 'videos_to_poses'; main()"]
    _note_load()
    start, cpu, busy = time.perf_counter(), _children_cpu(), machine_busy_seconds()
    subprocess.run([*cli, "--format", "mediapipe", "-d", str(work), "--recursive",
                    "--num-workers", str(args.cpus)], check=True, capture_output=True)
    seconds, busy = time.perf_counter() - start, machine_busy_seconds() - busy
    made = len(list(work.rglob("*.pose")))
    return frames / seconds, (f"({seconds:.1f} s, {made} poses; {_children_cpu() - cpu:.0f} CPU-s in all; "
                              f"{_busy('b', busy, frames)})")


def measure_c(work: Path, corpus: Path, frames: int, args, warm: bool = False) -> tuple[float, str]:
    _note_load()
    variants = json.loads(args.job_options)
    variants = variants if isinstance(variants, list) else [variants]
    options = variants[VARIANT.setdefault("next", 0) % len(variants)]
    VARIANT["next"] += 1
    kind = "w" if warm else "c"
    r = _run_worker(kind, str(corpus), str(work), str(args.cpus), json.dumps(options), str(int(args.by_process)))
    with_init = frames / (r["seconds"] + r["ray_init_seconds"])
    steady = frames / r["steady_seconds"]
    STEADY[kind] = max(STEADY.get(kind, 0.0), steady)
    return frames / r["seconds"], (f"{options} ({r['seconds']:.1f} s, {r['ok']} ok, {r['failed']} failed; "
                                   f"{_busy(kind, r['busy_seconds'], frames)}; "
                                   f"{steady:.1f} frames/s from the first video's start to the last's end, "
                                   f"{with_init:.1f} with ray.init's {r['ray_init_seconds']:.1f} s)"
                                   + "".join(f"\n      {k:<40} {v:6.1f} CPU-s" for k, v in r["by_process"].items()))


def measure_d(work: Path, corpus: Path, frames: int, args) -> tuple[float, str]:
    _note_load()
    r = _run_worker("d", str(corpus), str(args.cpus))
    return r["frames"] / r["seconds"], (f"({r['seconds']:.1f} s; {r['cpu_seconds']:.0f} CPU-s in all; "
                                        f"{_busy('d', r['busy_seconds'], r['frames'])})")


def measure_w(work: Path, corpus: Path, frames: int, args) -> tuple[float, str]:
    return measure_c(work, corpus, frames, args, warm=True)


MEASURE = {"a": measure_a, "b": measure_b, "c": measure_c, "w": measure_w, "d": measure_d}


def _run_worker(*args: str) -> dict:
    cpu = _children_cpu()
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the whole process tree, start-up included (not Ray's processes: they are not our descendants' to reap)
    result["cpu_seconds"] = _children_cpu() - cpu
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=12, help="copies of each sample video (2 videos)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs / workers for (b), (c), (w), (d)")
    parser.add_argument("--only", default="abcd", help="which measurements to run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each this many times, alternating; print the best and the median")
    parser.add_argument("--by-process", action="store_true",
                        help="for (c) and (w), also print the CPU-s each kind of process spent (samples /proc)")
    parser.add_argument("--job-options", default="{}",
                        help="JSON of ExtractConfig fields for (c), or a list of them used in turn by each (c)")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "a":
            result = worker_a(Path(rest[0]), Path(rest[1]))
        elif kind in ("c", "w"):
            result = worker_c(Path(rest[0]), Path(rest[1]), int(rest[2]), json.loads(rest[3]), warm=kind == "w",
                              by_process=rest[4] == "1")
        else:
            result = worker_d(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        videos = make_corpus(corpus, args.copies)
        frames = count_frames(videos)
        print(f"corpus: {len(videos)} videos, {frames} frames ({corpus})")
        runs: dict[str, list[float]] = {}
        for attempt in range(args.repeat):
            for index, kind in enumerate(args.only):
                rate, note = MEASURE[kind](root / f"{kind}-{attempt}-{index}", corpus, frames, args)
                runs.setdefault(kind, []).append(rate)
                print(f"{LABELS[kind].format(n=args.cpus):<52} {rate:6.1f} frames/s  {note}  "
                      f"[load avg before {LOAD_BEFORE[-1]:.1f}]", flush=True)
        best = {k: max(v) for k, v in runs.items()}
        # this machine's neighbours make single runs vary by +-10%: the median of alternating runs is
        # the steadier figure, the best run the one least disturbed
        summaries = [("best", best)]
        if args.repeat > 1:
            summaries.append(("median", {k: statistics.median(v) for k, v in runs.items()}))
        for name, rates in summaries:
            print(f"{name} of {args.repeat}:", ", ".join(f"({k}) {v:.1f}" for k, v in rates.items()))
            for job in ("c", "w"):
                if job in rates and "b" in rates:
                    print(f"  ({job})/(b) = {rates[job] / rates['b']:.2f}   (target >= 1.0)")
                if job in rates and "d" in rates:
                    print(f"  ({job})/(d) = {rates[job] / rates['d']:.2f}   (target >= 0.9)")
        # On N cores no run can go faster than N / (its CPU-s per frame): a job that costs the machine
        # more CPU per frame than (b) cannot overtake (b) by scheduling alone.
        if BUSY_PER_FRAME:
            cost = {k: statistics.median(v) for k, v in BUSY_PER_FRAME.items()}
            print("machine CPU per frame (median):",
                  ", ".join(f"({k}) {1000 * v:.1f} ms" for k, v in cost.items()),
                  f"-> ceilings on {args.cpus} cores:",
                  ", ".join(f"({k}) {args.cpus / v:.1f}" for k, v in cost.items()), "frames/s")
            for job in ("c", "w"):
                if job in cost and "b" in cost:
                    print(f"  CPU per frame ({job})/(b) = {cost[job] / cost['b']:.2f}")
        for job in ("c", "w"):
            if job in STEADY and "d" in best:
                print(f"({job}) from its first video's start (as (d) is timed), best / best (d): "
                      f"{STEADY[job] / best['d']:.2f}")


if __name__ == "__main__":
    main()
