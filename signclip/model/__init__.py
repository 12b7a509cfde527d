"""The SignCLIP model: configuration and presets, the BERT towers, tokenizer, prompts, the contrastive loss,
checkpoints (the native format, the fairseq importer, new models) and the ``Embedder`` that batches inputs.

May import ``signclip.io`` (storage, the model cache) and ``signclip.pose`` (features); never Ray or MediaPipe.
"""
