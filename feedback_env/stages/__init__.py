"""The pipeline's stages, each a class that carries its own state (as ``sosfilt``'s ``zi`` does)."""
