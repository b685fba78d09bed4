"""Knowledge bases as OpenAI vector stores: CRUD, file attachment, background ingestion, search."""
