"""The web UI: server-rendered page shells (Jinja2) whose scripts call the public API, in English and
Chinese."""
