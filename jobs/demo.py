"""The end-to-end demo on the bundled sample data (local Ray, local files).

    .venv/bin/python -m jobs.demo [--out runs/demo]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

import signclip
from signclip import sample_data
from signclip.prompts import build_prompt

log = logging.getLogger(__name__)


def similarity_table(model: signclip.SignCLIP, clips: dict[str, str], prompts: list[str]) -> str:
    """A prompt x clip table of the model's similarities."""
    scores = model.embed_texts(prompts) @ model.embed_poses(list(clips.values())).T
    width = max(map(len, prompts))
    header = " " * width + "  " + "  ".join(f"{name[:14]:>14}" for name in clips)
    rows = [f"{p:<{width}}  " + "  ".join(f"{s:14.3f}" for s in row) for p, row in zip(prompts, scores)]
    return "\n".join([header, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signclip demo", description=__doc__)
    parser.add_argument("--model", help="a native model directory (default: a new 'small' model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = signclip.load(args.model) if args.model else signclip.create("small")
    clips = {rel.split("/")[-1].removesuffix(".pose"): str(sample_data.path(rel)) for rel in sample_data.LABELLED_POSES}
    glosses = sorted(set(sample_data.LABELLED_POSES.values()))
    prompts = [build_prompt(g, "ase") for g in glosses]
    print(similarity_table(model, clips, prompts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
