"""ragtune server: OpenAI-compatible chat with RAG, LoRA adapters and A/B comparison."""

import os

# Nothing in this process may reach a model hub: models are embedded or local directories.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
