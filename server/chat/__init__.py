"""Chat completions: wire types, the service that renders prompts and drives the engine, the routes."""
