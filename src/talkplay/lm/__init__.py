"""The LLM side: base model loading, vocabulary expansion, rendering, checkpoints."""
