"""Training without Ray: configuration, optimiser, one step, validation and resumable state; (pose, text) pairs
from manifests, featurised batches, the per-epoch batch plan shared by workers, and the paper's recipes.

May import ``signclip.io``, ``signclip.pose``, ``signclip.model`` and ``signclip.evaluation``.
``signclip.jobs.train`` wires these into Ray Train.
"""
