"""Data files that ship inside the medmm package (the clinical corpus the embedded tokenizer is trained on)."""
