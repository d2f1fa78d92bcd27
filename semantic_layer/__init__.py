"""semantic_layer package."""
