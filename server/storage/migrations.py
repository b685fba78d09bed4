"""Schema versions of the metadata store: ordered steps, run at start-up, recorded in `PRAGMA user_version`.

Version 1 is the schema of the releases before versioning (their files say user_version 0). To change the
schema, append a `Step`; never edit a step that has shipped: data directories in the field went through it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ragtune")

# Frozen: the schema exactly as the releases before versioning wrote it (their SCHEMA, `IF NOT EXISTS` kept).
BASELINE = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    mime TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vector_stores (
    id TEXT PRIMARY KEY,
    name TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    chunking TEXT,
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vector_store_files (
    vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
    file_id TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    usage_bytes INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    chunking TEXT NOT NULL,
    batch_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (vector_store_id, file_id)
);
CREATE INDEX IF NOT EXISTS vsf_status ON vector_store_files(status, created_at);
CREATE INDEX IF NOT EXISTS vsf_hash ON vector_store_files(vector_store_id, sha256);
-- Chunks belong to a content hash within a store: attaching identical bytes twice shares them.
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    page INTEGER,
    tokens INTEGER NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    terms TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_owner ON chunks(vector_store_id, sha256);
CREATE TABLE IF NOT EXISTS file_batches (
    id TEXT PRIMARY KEY,
    vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fine_tuning_jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    training_file TEXT NOT NULL,
    validation_file TEXT,
    suffix TEXT,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    fine_tuned_model TEXT,
    trained_tokens INTEGER,
    estimated_finish INTEGER,
    metrics TEXT,
    metadata TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    events_offset INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE TABLE IF NOT EXISTS fine_tuning_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT,
    type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ft_events_job ON fine_tuning_events(job_id, id);
CREATE TABLE IF NOT EXISTS fine_tuning_checkpoints (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS comparisons (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    arms TEXT NOT NULL,
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    report TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS battles (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    winner TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS adapters (
    name TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    base TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""


def _recompute_terms(conn: sqlite3.Connection) -> None:
    """Every chunk's `terms` from its text, with today's `retrieval.lexical.terms` (steps that change the
    tokenizer again call this again)."""
    import json

    from retrieval.lexical import terms

    rows = conn.execute("SELECT id, text FROM chunks").fetchall()
    conn.executemany(
        "UPDATE chunks SET terms = ? WHERE id = ?",
        [
            (json.dumps(terms(text), ensure_ascii=False, separators=(",", ":")), row_id)
            for row_id, text in rows
        ],
    )


def _key_derived_data_by_run(conn: sqlite3.Connection) -> None:
    """Step 4: derived data is keyed by what produced it.

    - `vector_store_files.run_id`: a fresh id per attachment run; the ingestion worker commits only if the
      row still has the run id it started with (a detached and re-attached file is another run).
    - `chunking_key` ("max/overlap" tokens) on attachments and chunks: identical bytes share chunks only
      under the same chunking settings. Existing chunks take the key of the oldest attachment of their bytes.
    - `parsed_documents`: each document's parsed text and parse report, kept with its chunks.
    """
    key = (
        "CAST(json_extract(chunking, '$.static.max_chunk_size_tokens') AS TEXT) || '/' || "
        "CAST(json_extract(chunking, '$.static.chunk_overlap_tokens') AS TEXT)"
    )
    script = f"""
        ALTER TABLE vector_store_files ADD COLUMN run_id TEXT;
        ALTER TABLE vector_store_files ADD COLUMN chunking_key TEXT NOT NULL DEFAULT '';
        UPDATE vector_store_files SET run_id = lower(hex(randomblob(8))), chunking_key = COALESCE({key}, '');
        ALTER TABLE chunks ADD COLUMN chunking_key TEXT NOT NULL DEFAULT '';
        UPDATE chunks SET chunking_key = COALESCE((
            SELECT v.chunking_key FROM vector_store_files v
            WHERE v.vector_store_id = chunks.vector_store_id AND v.sha256 = chunks.sha256
            ORDER BY v.status != 'completed', v.created_at, v.rowid LIMIT 1), '');
        DROP INDEX IF EXISTS chunks_owner;
        CREATE INDEX chunks_owner ON chunks(vector_store_id, sha256, chunking_key);
        DROP INDEX IF EXISTS vsf_hash;
        CREATE INDEX vsf_hash ON vector_store_files(vector_store_id, sha256, chunking_key);
        CREATE TABLE parsed_documents (
            vector_store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE,
            sha256 TEXT NOT NULL,
            chunking_key TEXT NOT NULL,
            text TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (vector_store_id, sha256, chunking_key)
        );
        """
    for statement in _statements(script):  # not executescript: it would COMMIT the step's transaction
        conn.execute(statement)


@dataclass(frozen=True)
class Step:
    """One schema change: SQL statements (`;`-separated) or a function given the open connection.

    It runs inside the transaction that also sets `user_version` to `version`, so it must not COMMIT."""

    version: int
    description: str
    apply: str | Callable[[sqlite3.Connection], None]


STEPS: tuple[Step, ...] = (
    Step(1, "baseline schema", BASELINE),
    # Child keys looked up without an index were full scans: deleting a file scans vector_store_files
    # twice (detach_everywhere's lookup and the ON DELETE CASCADE), and listing a job's checkpoints
    # scanned every checkpoint and sorted them.
    Step(
        2,
        "index vector_store_files by file and fine_tuning_checkpoints by job",
        "CREATE INDEX IF NOT EXISTS vsf_file ON vector_store_files(file_id);"
        "CREATE INDEX IF NOT EXISTS ft_checkpoints_job ON fine_tuning_checkpoints(job_id, step);",
    ),
    # BM25 terms are derived from each chunk's text by retrieval.lexical.terms, which now splits by script
    # (identifiers, C++, katakana words stay whole): chunks indexed before must get the query's terms.
    Step(3, "recompute every chunk's BM25 terms with the script-aware tokenizer", _recompute_terms),
    Step(4, "key chunks by attachment run and chunking settings; keep parsed text", _key_derived_data_by_run),
    # Each knowledge base records the embedder that built its vectors (before this step there was one,
    # all-MiniLM-L6-v2, 384-d), and a change of embedder re-embeds its chunks into `next_embedding`
    # in the background before they replace `embedding` in one transaction.
    Step(
        5,
        "record each vector store's embedder; room for re-embedding",
        "ALTER TABLE vector_stores ADD COLUMN embedding_model TEXT NOT NULL DEFAULT 'all-minilm-l6-v2';"
        "ALTER TABLE vector_stores ADD COLUMN embedding_version TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE vector_stores ADD COLUMN embedding_dimension INTEGER NOT NULL DEFAULT 384;"
        "ALTER TABLE vector_stores ADD COLUMN reindex_model TEXT;"
        "ALTER TABLE vector_stores ADD COLUMN reindex_error TEXT;"
        "ALTER TABLE chunks ADD COLUMN next_embedding BLOB;",
    ),
    # Responses API (`store: true`): each response's object and its own input items; a conversation
    # continued by `previous_response_id` is the chain of rows its links name.
    Step(
        6,
        "stored responses of the Responses API",
        "CREATE TABLE IF NOT EXISTS responses ("
        " id TEXT PRIMARY KEY,"
        " created_at INTEGER NOT NULL,"
        " status TEXT NOT NULL,"
        " previous_response_id TEXT,"
        " input_items TEXT NOT NULL,"
        " body TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS responses_status ON responses(status);",
    ),
)
LATEST = STEPS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer ragtune than this one; it is left untouched."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"data directory {path.parent} was written by a newer ragtune (schema {found}; this release "
            f"knows up to {known}): upgrade ragtune or use another RAGTUNE_DATA_DIR"
        )
        self.found, self.known = found, known


def migrate(conn: sqlite3.Connection, path: Path, steps: Sequence[Step] = STEPS) -> int:
    """Bring the database open on `conn` (autocommit mode, the file at `path`) to the last of `steps`.

    Each pending step runs in its own transaction together with its `user_version` bump, so a failure
    (the step's exception is re-raised) or a crash leaves the database at the previous version. Before
    the first step on a database that already holds tables, a copy is written next to it
    (`<name>.bak-v<version>`): cheap insurance against a step that is wrong rather than failing.
    Returns the version reached; raises SchemaTooNew (before writing anything) for a newer schema."""
    current = _version(conn)
    latest = steps[-1].version
    if current > latest:
        raise SchemaTooNew(path, current, latest)
    has_tables = _has_tables(conn)
    if current == 0 and has_tables:  # a file of the releases before versioning: the baseline is there
        current = 1
    pending = [step for step in steps if step.version > current]
    if pending and has_tables:
        backup = path.with_name(f"{path.name}.bak-v{current}")
        copy = sqlite3.connect(backup)
        try:
            conn.backup(copy)
        finally:
            copy.close()
        log.info("schema: upgrading %s from version %d to %d (copy at %s)", path, current, latest, backup)
    for step in pending:
        _apply(conn, step)
    return latest


def check_schema(path: Path, known: int = LATEST) -> None:
    """Raise SchemaTooNew if the database file at `path` needs a newer ragtune; opens it read-only.

    A missing file is fine (it will be created at the latest version)."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = _version(conn)
    finally:
        conn.close()
    if found > known:
        raise SchemaTooNew(path, found, known)


def _apply(conn: sqlite3.Connection, step: Step) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _version(conn) >= step.version:  # another process applied it while we waited for the lock
            conn.execute("ROLLBACK")
            return
        if callable(step.apply):
            step.apply(conn)
        else:
            for statement in _statements(step.apply):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(step.version)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    log.info("schema: applied step %d (%s)", step.version, step.description)


def _statements(script: str) -> Iterator[str]:
    """The statements of `script` one by one (`executescript` would COMMIT the open transaction)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""


def _version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone() is not None
