"""/v1/files: uploads stored by id under <data dir>/files, metadata in SQLite."""
