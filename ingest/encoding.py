"""Text decoding for ingestion: the rules live in common/encoding.py, shared with fine-tuning and eval
files, which must not import the parsers that `ingest/__init__` loads (a GPU machine that has only torch,
transformers and peft runs the training recipe)."""

from common.encoding import (
    GUESSES,
    MAX_CHAOS,
    decode_text,
    decode_with_encoding,
    detect_encoding,
    looks_binary,
)

__all__ = ["GUESSES", "MAX_CHAOS", "decode_text", "decode_with_encoding", "detect_encoding", "looks_binary"]
