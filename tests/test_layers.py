"""What may import what (docs/architecture.md, "Layers"), checked on the source, so the layers stay put."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("common", "ingest", "retrieval", "finetune", "evals", "server")


def imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, at any depth (deferred imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in OURS}


def modules(package: str) -> dict[str, set[str]]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): imports(path)
        for path in (ROOT / package).rglob("*.py")
    }


def offenders(graph: dict[str, set[str]], allowed, forbidden) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in graph.items()
        if allowed(module)
        for name in names
        if forbidden(name)
    )


def test_lower_packages_never_import_the_server():
    for package in ("common", "ingest", "retrieval", "finetune"):
        graph = modules(package)
        assert not offenders(graph, lambda m: True, lambda n: n.split(".")[0] in ("server", "evals"))
    assert not offenders(modules("common"), lambda m: True, lambda n: not n.startswith("common"))


def test_routes_are_leaves_and_services_never_reach_up():
    graph = modules("server")

    def is_routes(name: str) -> bool:
        return name == "server.routes" or name.endswith(".routes")

    # Only the app includes routers; the comparisons router borrows the arena's dependency for the
    # leaderboard it serves.
    assert not offenders(
        graph,
        lambda m: m not in ("server.app", "server.comparisons.routes"),
        is_routes,
    )
    assert offenders(graph, lambda m: m == "server.comparisons.routes", is_routes) == [
        "server.comparisons.routes imports server.arena.routes"
    ]
    # Only the app and the CLI build the services.
    assert not offenders(
        graph,
        lambda m: m != "server.app" and not m.startswith("server.cli"),
        lambda n: n in ("server.state", "server.app"),
    )


def test_protocols_import_only_protocols():
    graph = modules("server")
    assert not offenders(
        graph,
        lambda m: m.endswith("protocol"),
        lambda n: n.startswith("server") and not n.endswith("protocol") and n != "server.errors",
    )


def test_rag_step_needs_only_wire_types():
    assert "server.vector_stores.service" not in imports(ROOT / "server" / "chat" / "rag.py")
