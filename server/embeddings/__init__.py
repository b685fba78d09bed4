"""/v1/embeddings: wire types, service and route."""
