"""Text-to-sign lookup over an embedded corpus: which clips best match a prompt.

    python -m signclip.jobs.search --embeddings runs/emb "<en> <ase> house" -k 10
    signclip search --embeddings s3://bucket/emb "<en> <ase> house" "<en> <ase> sad" --json

The query is embedded with the model named in the shards (or ``--model``); see :mod:`signclip.search.lookup`.
Runs in-process (no Ray): the corpus's embeddings are loaded into memory and searched exactly (``--search-mode``).
Exit code 2 on an empty query, a missing corpus or a model that does not match the embeddings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from signclip.jobs import contract


def parser() -> argparse.ArgumentParser:
    from signclip.search.index import APPROXIMATE_ABOVE

    p = argparse.ArgumentParser(prog="signclip search", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("queries", nargs="+", help='prompts, e.g. "<en> <ase> house"')
    p.add_argument("--embeddings", required=True, help="embedding directory written by `signclip embed`")
    p.add_argument("--model", help="model directory (default: the one named in the embeddings)")
    p.add_argument("-k", "--top", type=contract.positive_int, default=10, help="results per query (default 10)")
    p.add_argument("--device", default="cpu", help="torch device for the query (default cpu)")
    p.add_argument("--search-mode", choices=("exact", "approximate", "auto"), default="exact",
                   help="exact (default: one query needs no index build), approximate (FAISS HNSW, needs "
                        f"signclip[search]) or auto (approximate above {APPROXIMATE_ABOVE:,} clips)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    from signclip.model.checkpoint import CheckpointError
    from signclip.search.lookup import SignSearch, check_queries

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        check_queries(args.queries)
        index = SignSearch.load(args.embeddings, model_dir=args.model, device=args.device, mode=args.search_mode)
        results = index.search_many(args.queries, k=args.top)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for query, hits in zip(args.queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [asdict(h) for h in hits]}))
            continue
        print(f"{query}  ({len(index.corpus)} clips)")
        for h in hits:
            label = h.gloss or h.text
            print(f"  {h.rank:>3}  {h.score:10.4f}  {h.id}" + (f"  [{label}]" if label else "") + f"  {h.source}")
    return 0


if __name__ == "__main__":
    contract.command_line(main)
