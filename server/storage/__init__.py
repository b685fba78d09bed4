"""Metadata store (SQLite, the source of truth) and the data directory layout."""
