"""Reading and writing what the jobs share: storage (local paths and ``s3://`` through one layer), manifests and
the one item-status type, the input lister, the node-local model cache and the embedding store.

The bottom layer: imports nothing else of ``signclip``, and no torch, no Ray, no MediaPipe.
"""
