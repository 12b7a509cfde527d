"""Video -> pose: streaming decode, MediaPipe Holistic (one graph per worker, reset exactly between videos),
one video -> one ``.pose`` with its manifest row, and the plan of an extraction run. No Ray here.

May import ``signclip.io`` and ``signclip.pose``; the only layer that runs MediaPipe.
"""
