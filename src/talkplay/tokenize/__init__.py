"""The music tokenizer: K-means codebooks per modality, the music-token grammar, reverse lookup."""
