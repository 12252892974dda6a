"""Model sources: one small interface over GGUF files and TransformerLens-loaded checkpoints."""
