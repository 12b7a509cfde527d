"""A dataset as published -> train / val / test manifests that every other job reads.

    signclip manifest asl_citizen --root data/ASL_Citizen --output manifests/asl_citizen --clean-glosses
    signclip manifest wlasl --root data/WLASL --output manifests/wlasl --set subset=100
    signclip manifest spreadthesign --root data/spreadthesign --output manifests/sts --val-fraction 0.001
    signclip manifest asl_signs --root data/asl-signs --output manifests/asl_signs --write-poses data/asl-signs-poses
    python -m signclip.jobs.manifest --help

Datasets: spreadthesign, asl_citizen, sem_lex, wlasl, rwth_fingerspelling, asl_signs (Google's Kaggle
parquet); their layouts are described in ``signclip/datasets/<name>.py``. Runs in-process (no Ray): it
reads the dataset's index files and lists the pose folder once.

Writes to ``--output`` (local or s3://), every file on every run (empty ones included, so a rerun leaves
nothing stale): ``train.parquet``, ``val.parquet``, ``test.parquet`` (``--csv`` adds ``.csv`` copies) holding
the clips whose pose file exists, ``missing.csv`` (clips the dataset lists whose pose file is absent: id,
split, gloss, expected path), ``failed.csv`` (clips whose landmark file ``--write-poses`` could not convert:
id, split, gloss, source path, error) and ``summary.json``; prints clips, glosses, signers, missing files and
failed conversions per split. Exit code 1 when a conversion failed; 2 on an unknown dataset, a missing
root, an option the dataset does not take, a layout that does not match, or no clip with a pose file.
"""

from __future__ import annotations

import argparse
import inspect
import io
import logging
import sys
from typing import Any

from signclip.jobs import contract

log = logging.getLogger("signclip.jobs.manifest")
MISSING = "missing.csv"  # clips the dataset lists whose pose file is absent
FAILED = "failed.csv"  # clips whose landmark file failed to convert (--write-poses), with the error


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signclip manifest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("dataset", help="which dataset layout: spreadthesign, asl_citizen, sem_lex, wlasl, "
                                   "rwth_fingerspelling, asl_signs")
    p.add_argument("--root", required=True, help="the dataset's folder as published (local or s3://)")
    contract.add_output(p, help="folder for the manifests (local or s3://)", old="--out")
    p.add_argument("--poses", help="folder of the .pose files (default: ROOT/poses, else ROOT)")
    p.add_argument("--clean-glosses", action="store_true",
                   help="merge gloss variants as the original did (asl_citizen: HOUSE2 -> house; "
                        "sem_lex: eat_1 -> eat, oh_i_see -> oh i see)")
    p.add_argument("--val-fraction", type=float, help="validation share of a random split (datasets without "
                                                       "a published split)")
    p.add_argument("--test-fraction", type=float, help="test share of a random split")
    p.add_argument("--seed", type=int, help="seed of a random split (default 3407, as the original)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other adapter option, e.g. subset=100, cameras=cam1,cam2, prompt=sentence "
                        "(repeatable)")
    p.add_argument("--write-poses", metavar="DIR",
                   help="asl_signs: convert each landmark parquet to a .pose file under DIR and point the "
                        "manifests at those")
    p.add_argument("--csv", action="store_true", help="also write each manifest as CSV")
    return p


def _coerce(key: str, text: str, default: Any) -> Any:
    """A --set value typed like the option's default (bool, int, float, list; else a string)."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"option {key}: expected true or false, got {text!r}")
        return lowered in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, (tuple, list)):
        return [t.strip() for t in text.split(",") if t.strip()]
    if default is None and text.strip().lstrip("-").isdigit():
        return int(text)
    return text


def adapter_options(adapter: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options for ``adapter`` from the command line; a ValueError names one it does not take."""
    params = {name: p.default for name, p in inspect.signature(adapter).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    given: dict[str, Any] = {}
    flags = {"poses_dir": ("--poses", args.poses), "clean_glosses": ("--clean-glosses", args.clean_glosses or None),
             "val_fraction": ("--val-fraction", args.val_fraction),
             "test_fraction": ("--test-fraction", args.test_fraction), "seed": ("--seed", args.seed)}
    for key, (flag, value) in flags.items():
        if value is None:
            continue
        if key not in params:
            raise ValueError(f"{flag} does not apply to this dataset (its options: {', '.join(params)})")
        given[key] = value
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        if key not in params:
            raise ValueError(f"--set {key}: no such option for this dataset (its options: {', '.join(params)})")
        given[key] = _coerce(key, text, params[key])
    return given


def summarize(df: Any) -> dict[str, dict[str, int]]:
    """Per split: clips with a usable pose file, their distinct glosses and signers, missing pose files and
    clips whose conversion failed."""
    from signclip.datasets import SPLITS
    from signclip.datasets.common import failed, usable

    summary = {}
    for split in SPLITS:
        in_split = df["split"] == split
        ok = df[in_split & usable(df)]
        summary[split] = {"clips": int(len(ok)), "glosses": int(ok["gloss"].nunique()),
                          "signers": int(ok["signer"].dropna().nunique()),
                          "missing": int((in_split & df["missing"]).sum()),
                          "failed": int((in_split & failed(df)).sum())}
    return summary


def _write_csv(df: Any, path: str) -> None:
    from signclip.io import storage

    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    storage.write_bytes_atomic(path, buffer.getvalue().encode())


def _write_table(df: Any, path: str, schema: Any, csv: bool) -> None:
    import pyarrow as pa

    from signclip.io import storage
    from signclip.io.manifests import write_manifest

    write_manifest(pa.Table.from_pandas(df, schema=schema, preserve_index=False), path)
    csv_path = path[: -len(".parquet")] + ".csv"
    # a copy an earlier --csv run left would otherwise contradict the Parquet beside it
    if csv or storage.exists(csv_path):
        _write_csv(df, csv_path)


def write_outputs(df: Any, out: str, csv: bool = False) -> dict[str, dict[str, int]]:
    """Write every split's manifest, ``missing.csv``, ``failed.csv`` and ``summary.json``; return the summary.

    Each file is written on every run, empty ones included, so none an earlier run wrote is left to contradict
    the summary (a clip moved from val to test must not stay in ``val.parquet``).
    """
    import pyarrow as pa

    from signclip.datasets import SPLITS
    from signclip.datasets.common import failed_files, missing_files, usable
    from signclip.io import storage

    summary = summarize(df)
    storage.makedirs(out)
    keep = usable(df)
    manifest = df.drop(columns=[c for c in ("missing", "error") if c in df.columns])
    # typed from every row, so a split with no clips still gets each column's type
    schema = pa.Schema.from_pandas(manifest, preserve_index=False)
    for split in SPLITS:
        rows = manifest[keep & (df["split"] == split)].reset_index(drop=True)
        _write_table(rows, storage.join(out, f"{split}.parquet"), schema, csv)
    _write_csv(missing_files(df), storage.join(out, MISSING))
    _write_csv(failed_files(df), storage.join(out, FAILED))
    contract.write_summary(out, summary)
    return summary


def print_summary(dataset: str, out: str, summary: dict[str, dict[str, int]]) -> None:
    print(f"{dataset} -> {out}")
    print(f"  {'split':<6} {'clips':>8} {'glosses':>8} {'signers':>8} {'missing':>8} {'failed':>8}")
    for split, row in summary.items():
        note = "" if row["clips"] else "   (empty manifest)"
        print(f"  {split:<6} {row['clips']:>8} {row['glosses']:>8} {row['signers']:>8} {row['missing']:>8}"
              f" {row['failed']:>8}{note}")
    if any(row["missing"] for row in summary.values()):
        print(f"  missing pose files are listed in {out.rstrip('/')}/{MISSING}")
    if any(row["failed"] for row in summary.values()):
        print(f"  clips that failed to convert are listed with their errors in {out.rstrip('/')}/{FAILED}")


def main(argv: list[str] | None = None) -> int:
    from signclip.datasets import DatasetError, adapter
    from signclip.io import storage

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = parser()
    args = p.parse_args(argv)
    contract.check_output(p, args)
    try:
        build = adapter(args.dataset)
        options = adapter_options(build, args)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.write_poses and build.__name__ != "asl_signs":
        print("error: --write-poses applies to asl_signs (landmark parquet) only", file=sys.stderr)
        return 2
    if not storage.exists(args.root):
        print(f"error: dataset root {args.root} does not exist", file=sys.stderr)
        return 2
    try:
        df = build(args.root, **options)
    except (DatasetError, FileNotFoundError) as e:
        print(f"error: {args.dataset}: {e}", file=sys.stderr)
        return 2
    if df.empty:
        print(f"error: {args.dataset}: no clips found under {args.root}", file=sys.stderr)
        return 2
    if df["missing"].all():
        print(f"error: {args.dataset}: none of the {len(df)} pose files the dataset lists exist "
              f"(e.g. {df['pose'].iloc[0]}); pass --poses DIR if they are elsewhere", file=sys.stderr)
        return 2
    if args.write_poses:
        from signclip.datasets.pose_files import write_pose_files

        df = write_pose_files(df, args.write_poses)
    summary = write_outputs(df, args.output, csv=args.csv)
    print_summary(args.dataset, args.output, summary)
    failed = sum(row["failed"] for row in summary.values())
    if failed and not any(row["clips"] for row in summary.values()):
        first = df["error"].dropna().iloc[0]
        print(f"error: {args.dataset}: none of the {failed} clips with a landmark file converted to .pose "
              f"(e.g. {first}); each error is in {args.output.rstrip('/')}/{FAILED}", file=sys.stderr)
    return contract.exit_code(failed)


if __name__ == "__main__":
    contract.command_line(main)
