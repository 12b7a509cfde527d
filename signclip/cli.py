"""The ``signclip`` command: one subcommand per job, each also runnable as ``python -m signclip.jobs.<name>``.

    signclip import-checkpoint checkpoint_best.pt --bert bert-base-cased/ --output models/e7.2
    signclip extract --input videos/ --output poses/
    signclip embed --model models/e7.2 --input poses/ --output embeddings/
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module with main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "import-checkpoint": ("signclip.cli", "import a released fairseq checkpoint into the native format"),
    "manifest": ("signclip.jobs.manifest", "dataset as published -> train/val/test manifests"),
    "extract": ("signclip.jobs.extract", "videos -> .pose files with MediaPipe Holistic, in parallel on Ray Data"),
    "train": ("signclip.jobs.train", "contrastive training on Ray Train"),
    "embed": ("signclip.jobs.embed", "bulk-embed poses, videos or prompts on Ray Data"),
    "evaluate": ("signclip.jobs.evaluate", "retrieval / recognition / few-shot metrics and plots"),
    "search": ("signclip.jobs.search", "text-to-sign lookup over an embedded corpus"),
    "serve": ("signclip.jobs.serve", "HTTP embedding service on Ray Serve"),
    "submit": ("signclip.jobs.submit", "submit any job to a Ray cluster through the job API"),
    "demo": ("signclip.jobs.demo", "the end-to-end demo on the bundled sample data"),
}


def import_checkpoint(argv: list[str] | None = None) -> int:
    from signclip.jobs import contract
    from signclip.pose.feature_sets import FEATURE_SETS

    parser = argparse.ArgumentParser(prog="signclip import-checkpoint", description=COMMANDS["import-checkpoint"][1])
    parser.add_argument("checkpoint", help="the released checkpoint_best.pt")
    parser.add_argument("--bert", required=True, help="directory of the BERT it was built from (config.json, vocab.txt)")
    contract.add_output(parser, help="directory to write the native model to", old="--out")
    parser.add_argument("--feature-set", choices=sorted(FEATURE_SETS),
                        help="the features the model was trained on (default: the one of the size its first layer "
                             "takes; a hand-only model, 63, needs right_hand or right_hand_3d)")
    args = parser.parse_args(argv)
    contract.check_output(parser, args)
    from signclip.model.checkpoint import CheckpointError
    from signclip.model.fairseq import from_fairseq

    try:
        model = from_fairseq(args.checkpoint, bert=args.bert, feature_set=args.feature_set)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.save(args.output)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {model.cfg.feature_set}, {model.cfg.video.num_layers}+{model.cfg.text.num_layers} "
          f"layers, hidden {model.cfg.embedding_dim}, {n / 1e6:.1f}M parameters")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: signclip COMMAND [options]   (signclip COMMAND --help for its options)\n\ncommands:\n"
              + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    if name == "import-checkpoint":
        return import_checkpoint(rest)
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
