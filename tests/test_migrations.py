"""The metadata store's schema versions: an old data directory upgrades in place with nothing lost, a newer
one is refused clearly (by `ragtune serve` too), a failing step changes nothing, a new one starts latest."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.storage.db import Database
from server.storage.migrations import LATEST, STEPS, SchemaTooNew, Step, check_schema, migrate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_V1 = Path(__file__).parent / "data" / "schema_v1.sql"

# One representative row per table, as the release before versioning wrote them.
V1_ROWS = {
    "files": [("file-1", "notes.md", "assistants", 12, "h1", "text/markdown", 100)],
    "vector_stores": [("vs_1", "docs", '{"team":"a"}', '{"type":"auto"}', 101, 102)],
    "vector_store_files": [
        ("vs_1", "file-1", "h1", "completed", 64, None, '{"k":1}', '{"type":"auto"}', "vsfb_1", 1, 103)
    ],
    "chunks": [
        (1, "vs_1", "h1", 0, "first chunk", 1, 3, "{}", '["first","chunk"]', b"\x00\x01\x02\x03"),
        (2, "vs_1", "h1", 1, "second chunk", None, 3, "{}", '["second","chunk"]', b"\x04\x05\x06\x07"),
    ],
    "file_batches": [("vsfb_1", "vs_1", 103, 0)],
    "fine_tuning_jobs": [
        (
            "ftjob-1",
            "base",
            "file-1",
            None,
            "mine",
            42,
            "{}",
            '{"n_epochs":1}',
            "succeeded",
            None,
            "ft:base:mine:ftjob-1",
            1000,
            None,
            '{"loss":0.5}',
            '{"who":"me"}',
            1,
            2,
            104,
            105,
        )
    ],
    "fine_tuning_events": [
        (1, "ftjob-1", 104, "info", "Job started", None, "message"),
        (2, "ftjob-1", 105, "info", "Step 1/1", '{"step":1,"train_loss":0.5}', "metrics"),
    ],
    "fine_tuning_checkpoints": [("ftckpt-1", "ftjob-1", 1, '{"train_loss":0.5}', 105)],
    "profiles": [("brief", '{"name":"brief","system":"Be brief."}', 106)],
    "comparisons": [("cmp_1", "{}", '["a","b"]', "completed", 2, 2, None, '{"winner":"a"}', 107)],
    "battles": [("battle_1", "{}", "a", 108), ("battle_2", "{}", None, 109)],
    "feedback": [("fb_1", '{"rating":1}', 110)],
    "adapters": [("ft:base:mine:ftjob-1", "ftjob-1", "base", "/data/adapters/x", 105)],
}


def make_v1(path: Path) -> Path:
    """A data directory's database exactly as the release before versioning left it (user_version 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA_V1.read_text())
    for table, rows in V1_ROWS.items():
        marks = ",".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.close()
    return path


def v1_columns() -> dict[str, list[str]]:
    """The columns each table had in version 1 (later steps may add columns, never drop one)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA_V1.read_text())
        return {t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in V1_ROWS}
    finally:
        conn.close()


def contents(path: Path) -> dict[str, list[tuple]]:
    """Every version-1 row, in version-1 columns."""
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT {', '.join(columns)} FROM {t} ORDER BY rowid").fetchall()
            for t, columns in v1_columns().items()
        }
    finally:
        conn.close()


def schema(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_steps_are_numbered_in_order():
    assert [step.version for step in STEPS] == list(range(1, LATEST + 1))


def test_v1_data_directory_upgrades_in_place_with_nothing_lost(tmp_path, caplog):
    path = make_v1(tmp_path / "ragtune.sqlite3")
    assert user_version(path) == 0 and contents(path) == V1_ROWS  # the fixture is what we think it is
    caplog.set_level(logging.INFO, logger="ragtune")

    Database(path).close()

    applied = [r.getMessage() for r in caplog.records if "applied step" in r.getMessage()]
    assert len(applied) == LATEST - 1  # recognised as version 1: every later step, not the baseline
    assert user_version(path) == LATEST
    assert contents(path) == V1_ROWS
    Database(tmp_path / "fresh" / "ragtune.sqlite3").close()
    assert schema(path) == schema(tmp_path / "fresh" / "ragtune.sqlite3")  # as if created today
    backup = tmp_path / "ragtune.sqlite3.bak-v1"
    assert user_version(backup) == 0 and contents(backup) == V1_ROWS

    caplog.clear()
    backup.unlink()
    db = Database(path)  # again: nothing to do
    assert not [r for r in caplog.records if "schema:" in r.getMessage()] and not backup.exists()
    assert db.one("SELECT filename FROM files WHERE id = 'file-1'")["filename"] == "notes.md"
    db.close()
    assert user_version(path) == LATEST and contents(path) == V1_ROWS


def test_step_5_records_minilm_for_the_stores_made_before_it(tmp_path):
    """Before step 5 every store was built by all-MiniLM-L6-v2 (384-d), the only embedder there was."""
    path = make_v1(tmp_path / "ragtune.sqlite3")
    Database(path).close()
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT embedding_model, embedding_dimension, reindex_model FROM vector_stores WHERE id = 'vs_1'"
        ).fetchone()
        pending = conn.execute("SELECT COUNT(next_embedding) FROM chunks").fetchone()[0]
    finally:
        conn.close()
    assert row == ("all-minilm-l6-v2", 384, None) and pending == 0


def test_step_2_indexes_the_lookups_that_scanned(tmp_path):
    db = Database(make_v1(tmp_path / "ragtune.sqlite3"))
    for sql in (
        "SELECT vector_store_id, sha256 FROM vector_store_files WHERE file_id = 'file-1'",
        "SELECT * FROM fine_tuning_checkpoints WHERE job_id = 'ftjob-1' ORDER BY step DESC",
    ):
        plan = " ".join(row[3] for row in db.query("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
    db.close()


def test_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = make_v1(tmp_path / "ragtune.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 3}")
    conn.close()
    before = schema(path)
    message = f"written by a newer ragtune \\(schema {LATEST + 3}; this release knows up to {LATEST}\\)"

    with pytest.raises(SchemaTooNew, match=message) as caught:
        Database(path)
    assert "RAGTUNE_DATA_DIR" in str(caught.value) and str(tmp_path) in str(caught.value)
    with pytest.raises(SchemaTooNew, match=message):
        check_schema(path)
    assert user_version(path) == LATEST + 3 and schema(path) == before and contents(path) == V1_ROWS
    assert not (tmp_path / f"ragtune.sqlite3.bak-v{LATEST + 3}").exists()
    check_schema(tmp_path / "missing" / "ragtune.sqlite3")  # nothing there yet: fine


def test_serve_refuses_a_newer_data_directory_before_loading_a_model(tmp_path):
    path = Database(tmp_path / "data" / "ragtune.sqlite3").path  # latest, in WAL mode, closed below
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAGTUNE_DATA_DIR": str(path.parent),
        "HF_HUB_OFFLINE": "1",  # were the check to miss, loading the model must fail, not download
    }
    ragtune = Path(sys.executable).parent / "ragtune"
    result = subprocess.run([str(ragtune), "serve"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"written by a newer ragtune (schema {LATEST + 1}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def boom(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE half_done (x INTEGER)")
    conn.execute("UPDATE files SET filename = 'changed'")
    raise RuntimeError("step failed")


@pytest.mark.parametrize(
    "failing",
    [
        Step(LATEST + 1, "a function that raises midway", boom),
        Step(LATEST + 1, "SQL whose second statement fails", "CREATE TABLE half_done (x); SELECT nope();"),
    ],
    ids=["callable", "sql"],
)
def test_failing_step_leaves_the_previous_version(tmp_path, failing):
    path = make_v1(tmp_path / "ragtune.sqlite3")
    Database(path).close()
    before = schema(path)
    conn = sqlite3.connect(path, isolation_level=None)

    with pytest.raises((RuntimeError, sqlite3.OperationalError)):
        migrate(conn, path, [*STEPS, failing])
    assert not conn.in_transaction
    conn.close()

    assert user_version(path) == LATEST and schema(path) == before and contents(path) == V1_ROWS
    assert (tmp_path / f"ragtune.sqlite3.bak-v{LATEST}").exists()


def test_steps_apply_in_order_each_in_its_own_transaction(tmp_path):
    path = make_v1(tmp_path / "ragtune.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    steps = [*STEPS, Step(LATEST + 1, "add t", "CREATE TABLE t (x);"), Step(LATEST + 2, "fails", boom)]
    with pytest.raises(RuntimeError):
        migrate(conn, path, steps)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1  # the step before it stays
    steps[-1] = Step(LATEST + 2, "fill t", lambda c: c.execute("INSERT INTO t VALUES (7)"))
    assert migrate(conn, path, steps) == LATEST + 2
    assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]
    conn.close()


def test_new_data_directory_starts_at_the_latest_version(tmp_path):
    path = tmp_path / "new" / "ragtune.sqlite3"
    db = Database(path)
    tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(V1_ROWS) <= tables
    assert db.one("PRAGMA journal_mode")[0] == "wal" and db.one("PRAGMA foreign_keys")[0] == 1
    db.close()
    assert user_version(path) == LATEST
    assert not list(path.parent.glob("*.bak-*"))  # nothing to back up


def test_step_4_keys_chunks_by_their_attachment_and_gives_every_run_an_id(tmp_path):
    """Existing chunks take the chunking key of the attachment of their bytes; every attachment gets a
    run id; the parsed-documents table exists (empty: old files have no parsed text kept)."""
    path = tmp_path / "ragtune.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, STEPS[:3])
    conn.execute("INSERT INTO vector_stores (id, created_at, last_active_at) VALUES ('vs_1', 1, 1)")
    conn.execute("INSERT INTO files VALUES ('file-1', 'a.md', 'assistants', 3, 'h1', 'text/markdown', 1)")
    static = '{"type":"static","static":{"max_chunk_size_tokens":300,"chunk_overlap_tokens":20}}'
    conn.execute(
        "INSERT INTO vector_store_files (vector_store_id, file_id, sha256, status, chunking, created_at) "
        "VALUES ('vs_1', 'file-1', 'h1', 'completed', ?, 1)",
        (static,),
    )
    conn.execute(
        "INSERT INTO chunks (vector_store_id, sha256, seq, text, tokens, terms, embedding) "
        "VALUES ('vs_1', 'h1', 0, 'text', 1, '[]', x'00')"
    )
    migrate(conn, path)
    assert conn.execute("SELECT chunking_key FROM chunks").fetchone()[0] == "300/20"
    key, run_id = conn.execute("SELECT chunking_key, run_id FROM vector_store_files").fetchone()
    assert key == "300/20" and len(run_id) == 16
    assert conn.execute("SELECT COUNT(*) FROM parsed_documents").fetchone()[0] == 0
    conn.close()
