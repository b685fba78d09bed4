"""/v1/comparisons: A/B runs of arms (base, RAG, fine-tune, both) on the user's own questions."""
