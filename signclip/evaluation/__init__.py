"""Evaluation of embeddings: retrieval and recognition metrics (the reference's R@k, ranks), few-shot
classification, the report of a run, and its plots.

May import ``signclip.io`` and ``signclip.model`` (prompts); works on arrays, never on Ray.
"""
