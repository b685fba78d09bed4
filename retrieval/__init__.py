"""Embeddings and the per-knowledge-base indexes: FAISS (dense), BM25 (lexical), fused by RRF."""
