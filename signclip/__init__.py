"""SignCLIP: one embedding space for text and sign-language pose sequences (no Ray at import)."""
