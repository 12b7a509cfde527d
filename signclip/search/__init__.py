"""Dictionary search over corpora embedded by ``signclip embed``: a text or a clip -> the nearest clips, with the
query embedded by the very model that made the corpus.

May import ``signclip.io``, ``signclip.pose``, ``signclip.model`` and ``signclip.evaluation``; no Ray.
"""
