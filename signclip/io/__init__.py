"""Reading and writing what the jobs share: storage (local paths and ``s3://`` through one layer), manifests and
the one item-status type, the input lister, the node-local model cache, the embedding store and node-local
scratch files.

The bottom layer: imports nothing else of ``signclip``, and no torch, no Ray, no MediaPipe.
"""
