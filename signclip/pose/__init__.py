"""Poses: reading ``.pose`` files (and Google's parquet landmarks), the MediaPipe Holistic layout as data, the
feature sets and features the model reads, training augmentation, and the test-time flip / anonymise variants.

May import ``signclip.io``; never torch, Ray or (outside ``holistic_module``, on first use) MediaPipe.
"""
