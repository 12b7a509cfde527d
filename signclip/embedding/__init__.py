"""Bulk embedding: the items a run covers, the Ray Data stages as plain callables (featurise, embed, write
shards) and the plan of how many CPUs / GPUs each stage reserves. No Ray import at module level.

May import ``signclip.io``, ``signclip.pose``, ``signclip.model`` and ``signclip.extraction`` (videos in the input).
"""
