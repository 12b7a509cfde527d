"""The plots ``signclip evaluate`` writes (PNG bytes; matplotlib's Agg canvas, no global pyplot state).

- :func:`similarity_heatmap`: unique prompts x clips, clips grouped by their prompt, gold cells outlined;
- :func:`recall_curves`: video->text and text->video R@k for k = 1..K;
- :func:`embedding_map`: the clip embeddings projected on their first two principal components,
  coloured by label.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from signclip.evaluation import metrics

_MAX_LEGEND = 20


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _short(text: str, n: int = 40) -> str:
    """A label for a plot: at most ``n`` characters, ``$`` kept literal (matplotlib reads ``$...$`` as maths)."""
    text = text if len(text) <= n else text[: n - 1] + "…"
    return text.replace("$", r"\$")


def similarity_heatmap(text_emb_unique: np.ndarray, video_emb: np.ndarray, prompts: Sequence[str],
                       gold: np.ndarray, clip_names: Sequence[str] | None = None, max_texts: int = 40,
                       max_clips: int = 150) -> bytes:
    """The similarity of unique prompt ``t`` and clip ``v`` (``gold[v]`` = clip v's prompt), for the first
    ``max_texts`` prompts and up to ``max_clips`` of their clips (only those are scored)."""
    gold = np.asarray(gold)
    texts = np.arange(min(len(prompts), max_texts))
    clips = np.flatnonzero(np.isin(gold, texts))
    clips = clips[np.argsort(gold[clips], kind="stable")][:max_clips]
    sub = metrics.similarity(text_emb_unique[texts], video_emb[clips])
    fig = _figure(min(4 + 0.12 * len(clips), 24), min(2 + 0.3 * len(texts), 16))
    ax = fig.add_subplot()
    image = ax.imshow(sub, aspect="auto", cmap="viridis", interpolation="nearest")
    for col, clip in enumerate(clips):  # outline each clip's own prompt
        ax.add_patch(_rect(col, int(gold[clip])))
    ax.set_yticks(range(len(texts)), [_short(prompts[t]) for t in texts], fontsize=7)
    if clip_names is not None and len(clips) <= 60:
        ax.set_xticks(range(len(clips)), [_short(str(clip_names[c]), 24) for c in clips], rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"clips ({len(clips)}, grouped by prompt)")
    ax.set_title("prompt x clip similarity (gold outlined)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _png(fig)


def _rect(col: int, row: int):
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=0.8)


def recall_curves(video_emb: np.ndarray, text_emb_unique: np.ndarray, gold: np.ndarray, max_k: int = 50) -> bytes:
    """R@k for k = 1..min(max_k, candidates), both directions, computed with :mod:`signclip.evaluation.metrics`."""
    v2t_k = range(1, max(1, min(max_k, len(text_emb_unique))) + 1)
    t2v_k = range(1, max(1, min(max_k, len(video_emb))) + 1)
    v2t = metrics.video_to_text(video_emb, text_emb_unique, gold, tuple(v2t_k))
    t2v = metrics.text_to_video(text_emb_unique, video_emb, gold, tuple(t2v_k))
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    ax.plot(list(v2t_k), [v2t[f"R@{k}"] for k in v2t_k], marker=".", label="video -> text")
    ax.plot(list(t2v_k), [t2v[f"R@{k}"] for k in t2v_k], marker=".", label="text -> video")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("recall@k")
    return _png(fig)


def pca_2d(emb: np.ndarray) -> np.ndarray:
    """The rows of ``emb`` on their first two principal components (zeros where there are fewer). From the
    dim x dim covariance, so memory stays near one float32 copy of ``emb`` however many rows it has."""
    x = np.asarray(emb, dtype=np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out
    covariance = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), 8192):  # float64 sums, a block of rows at a time
        block = x[start:start + 8192].astype(np.float64)
        covariance += block.T @ block
    values, vectors = np.linalg.eigh(covariance)
    n = min(2, len(x) - 1, x.shape[1])
    top = np.argsort(values)[::-1][:n]
    out[:, :n] = x @ vectors[:, top].astype(np.float32)
    return out


def embedding_map(emb: np.ndarray, labels: Sequence[str]) -> bytes:
    """2-D PCA map of the clip embeddings, one colour per label (the most frequent ones in the legend)."""
    xy = pca_2d(emb)
    labels = np.asarray([str(label) for label in labels], dtype=object)
    names, counts = np.unique(labels, return_counts=True)
    shown = names[np.argsort(-counts, kind="stable")][:_MAX_LEGEND]
    fig = _figure(7, 6)
    ax = fig.add_subplot()
    others = ~np.isin(labels, shown)
    if others.any():
        ax.scatter(xy[others, 0], xy[others, 1], s=8, c="lightgrey", label=f"other ({others.sum()})")
    colours = _colours(len(shown))
    for name, colour in zip(shown, colours):
        sel = labels == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=colour, label=_short(name, 30))
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"clip embeddings, PCA ({len(labels)} clips, {len(names)} labels)")
    return _png(fig)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]
