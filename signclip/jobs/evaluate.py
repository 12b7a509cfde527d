"""Retrieval, recognition and few-shot evaluation of embedded clips, with the plots a person looks at.

    python -m signclip.jobs.evaluate --embeddings runs/emb --output runs/eval
    signclip evaluate --model models/e7.2 --manifest data/test.csv --output runs/eval --flip

From embeddings written by ``signclip embed`` (clips whose manifest gave a ``text``, or a ``gloss`` and
``language``), or from a model plus a manifest: the clips are then embedded first, with ``signclip.jobs.embed`` on
Ray Data, into ``OUTPUT/embeddings`` (``--flip`` / ``--anonymized`` are the paper's test-time variants).
The unique prompts are embedded with the same model (or taken from the directory's text rows).

Writes to OUTPUT (local or s3://): ``results.json`` (the reference's ``{"v2t": {R1, R5, R10, MedianR,
MeanR}, "t2v": {R1, R5, R10, P1, P5, P10, MedianR, MeanR}}``, plus ``t2v`` hit1/5/10, recognition accuracy,
few-shot and a per-sign-language breakdown), ``results.csv`` (one row per scope), ``similarity_heatmap.png``,
``recall_at_k.png``, ``embedding_map.png``. Exit code 1 when clips of the evaluated split failed to embed
(they are left out of the metrics), 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from signclip.evaluation import metrics, plots, report
from signclip.io import embedding_store, storage
from signclip.io.status import ItemStatus
from signclip.jobs import contract
from signclip.model.prompts import gloss_prompt
from signclip.training.recipes import RECIPES, recipe

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("signclip.jobs.evaluate")

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
PLOTS = ("similarity_heatmap.png", "recall_at_k.png", "embedding_map.png")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,5,10") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signclip evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", help="embedding directory written by `signclip embed`")
    source.add_argument("--manifest", help="manifest of clips (path + text or gloss/language); needs --model")
    p.add_argument("--model", help="model directory (needed with --manifest; default: the embeddings' model)")
    contract.add_output(p, help="where results and plots go (local or s3://)")
    p.add_argument("--split", help="evaluate only the clips of this split (e.g. test)")
    p.add_argument("--language", help="sign-language code for clips with a gloss but no language, e.g. ase")
    p.add_argument("--spoken", default="en", help="spoken-language tag of built prompts (default en)")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="the paper's configuration the model was trained with: its prompt sentence for clips "
                        "given by gloss (explicit --prompt-template wins)")
    p.add_argument("--prompt-template", help='prompt sentence for clips given by gloss, e.g. \'Sign the sign '
                   '"{gloss}" in {language}.\' (default: the recipe\'s, else "<en> <ase> gloss")')
    p.add_argument("--ks", type=_ints, default=(1, 5, 10), help="retrieval cut-offs (default 1,5,10)")
    p.add_argument("--shots", type=_ints, default=(1, 5, 10, 100), help="few-shot k (default 1,5,10,100)")
    p.add_argument("--knn-k", type=contract.positive_int, default=1,
                   help="neighbours of the kNN classifier (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the few-shot splits")
    p.add_argument("--device", default="cpu", help="torch device for the prompts (default cpu)")
    embed = p.add_argument_group("embedding (with --manifest)")
    embed.add_argument("--flip", action="store_true", help="test-time flip of left-handed clips (paper E8)")
    embed.add_argument("--anonymized", action="store_true", help="remove appearance first (paper E8.1)")
    embed.add_argument("--long-clips", choices=("truncate", "window"), default="truncate")
    embed.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    embed.add_argument("--actors", type=contract.positive_int, help="embedding actors (default: as `signclip embed`)")
    embed.add_argument("--path-column", help="manifest column of clip paths (default: as `signclip embed`)")
    embed.add_argument("--id-column", default=None, help="manifest column of ids (default: id if present)")
    contract.add_address(embed, old="--ray-address")
    return p


def _embed_manifest(args: argparse.Namespace) -> str:
    from signclip.jobs.embed import EmbedOptions, run

    target = storage.join(args.output, "embeddings")
    summary = run(EmbedOptions(model=args.model, output=target, input=args.manifest, flip=args.flip,
                               anonymized=args.anonymized, long_clips=args.long_clips, precision=args.precision,
                               actors=args.actors, path_column=args.path_column, id_column=args.id_column,
                               address=args.address))
    log.info("embedded: %s", summary.line())
    return target


def _check_variant(args: argparse.Namespace, clips: embedding_store.Corpus) -> None:
    for option in ("flip", "anonymized"):
        if getattr(args, option) and not clips.meta[option].all():
            raise ValueError(f"--{option}: the embeddings in {args.embeddings} were made without it; it applies "
                             "when embedding (use --model with --manifest, or `signclip embed --"
                             f"{option}`)")


def prompt_embeddings(corpus: embedding_store.Corpus, clips: embedding_store.Corpus, prompts: list[str],
                      model_dir: str | None, device: str) -> np.ndarray:
    """Embeddings of ``prompts``: the directory's own text rows when it has them all, else the model's."""
    texts = corpus.select(corpus.meta["kind"].eq("text").to_numpy())
    known: dict[str, int] = {}
    for i, text in enumerate(texts.meta["text"]):
        known.setdefault(" ".join(str(text).split()), i)  # prompts are whitespace-collapsed; the tokens are alike
    if prompts and all(p in known for p in prompts) and model_dir is None:
        log.info("prompt embeddings taken from the directory's text rows")
        return texts.embeddings[[known[p] for p in prompts]]
    from signclip.model.embedder import Embedder
    from signclip.search.lookup import load_model_for

    model = load_model_for(clips, model_dir, device)
    return Embedder(model, precision=str(clips.meta["precision"].iloc[0])).embed_texts(prompts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate and write the results and plots; returns the results."""
    template = args.prompt_template or (recipe(args.recipe).prompt_template if args.recipe else None)
    if template:
        gloss_prompt("house", "ase", template=template)  # a template that cannot be filled fails before any work
    storage.check_writable(args.output)
    directory = _embed_manifest(args) if args.manifest else args.embeddings
    corpus = embedding_store.load(directory)
    clips = corpus.select(corpus.meta["kind"].isin(["pose", "video"]).to_numpy())
    if args.split:
        clips = clips.select(clips.meta["split"].eq(args.split).to_numpy())
    if len(clips) == 0:
        raise ValueError(f"{directory}: no embedded clips" + (f" in split {args.split!r}" if args.split else ""))
    if args.embeddings:
        _check_variant(args, clips)
    try:
        prompts = report.clip_prompts(clips.meta, args.language, args.spoken, template)
    except ValueError as e:
        raise ValueError(f"{directory}: {e}") from e
    languages = report.clip_languages(clips.meta, prompts, args.language)
    uniq, gold = metrics.unique_texts(prompts)
    text_emb = prompt_embeddings(corpus, clips, uniq, args.model, args.device)
    results = report.evaluate(clips.embeddings, prompts, text_emb, languages, shots=args.shots,
                                  seed=args.seed, knn_k=args.knn_k, ks=args.ks)
    failed = _failed_clips(directory, args.split)
    meta = clips.meta.iloc[0]
    results.update(
        embeddings=directory, split=args.split or "", recipe=args.recipe or "", prompt_template=template or "",
        model=str(meta["model"]),
        model_name=str(meta["model_name"]), model_hash=str(meta["model_hash"]),
        variant={k: (bool(meta[k]) if k in ("flip", "anonymized") else str(meta[k]))
                 for k in ("feature_set", "flip", "anonymized", "long_clips", "precision")},
        failed_clips=len(failed))
    _write(args.output, results, clips, prompts, uniq, gold, text_emb)
    return results


def _failed_clips(directory: str, split: str | None) -> pd.DataFrame:
    """The clips of ``split`` (all, if None) that failed to embed: left out of the metrics, said in a warning."""
    index = embedding_store.read_index(directory, columns=("kind", "status", "split", "error"))
    failed = index[(index["kind"] != "text") & (index["status"] != ItemStatus.OK)]
    if split:
        failed = failed[failed["split"] == split]
    if len(failed):
        first = failed.iloc[0]
        log.warning("%d clip(s)%s failed to embed and are left out of the metrics (e.g. %s: %s); "
                    "%s/manifest.parquet says why for each", len(failed), f" of split {split!r}" if split else "",
                    first["id"], first["error"], directory.rstrip("/"))
    return failed


def _write(output: str, results: dict[str, Any], clips: embedding_store.Corpus, prompts: list[str],
           uniq: list[str], gold: np.ndarray, text_emb: np.ndarray) -> None:
    storage.makedirs(output)
    storage.write_bytes_atomic(storage.join(output, RESULTS_JSON), json.dumps(results, indent=2).encode())
    contract.write_summary(output, {k: results[k] for k in ("n_clips", "n_texts", "failed_clips", "v2t", "t2v",
                                                            "model", "model_hash", "embeddings") if k in results})
    storage.write_bytes_atomic(storage.join(output, RESULTS_CSV),
                               report.table_csv(report.results_table(results)))
    labels = [g or p for g, p in zip(clips.meta["gloss"], prompts)]
    images = (plots.similarity_heatmap(text_emb, clips.embeddings, uniq, gold, list(clips.meta["id"])),
              plots.recall_curves(clips.embeddings, text_emb, gold),
              plots.embedding_map(clips.embeddings, labels))
    for name, png in zip(PLOTS, images):
        storage.write_bytes_atomic(storage.join(output, name), png)
    log.info("wrote %s, %s and %d plots to %s", RESULTS_JSON, RESULTS_CSV, len(PLOTS), output)


def main(argv: list[str] | None = None) -> int:
    from signclip.embedding.items import InputError
    from signclip.model.checkpoint import CheckpointError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    if args.manifest and not args.model:
        print("error: --manifest needs --model", file=sys.stderr)
        return contract.EXIT_USAGE
    try:
        results = run(args)
    except (InputError, CheckpointError, FileNotFoundError, PermissionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return contract.EXIT_USAGE
    v2t, t2v = results["v2t"], results["t2v"]
    print(f"{results['n_clips']} clips, {results['n_texts']} prompts | video->text R@1 {v2t['R1']:.4f} "
          f"R@5 {v2t.get('R5', float('nan')):.4f} R@10 {v2t.get('R10', float('nan')):.4f} MedianR "
          f"{v2t['MedianR']:g} | text->video P@1 {t2v['P1']:.4f} | results in {args.output}")
    return contract.exit_code(results["failed_clips"])


if __name__ == "__main__":
    contract.command_line(main)
