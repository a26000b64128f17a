"""Item embeddings, one encoder per modality."""
