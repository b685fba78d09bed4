"""The API describes itself: every /v1 operation has a response schema; one list page and one pagination."""

from __future__ import annotations

import pytest

from server.protocol import Page, paginate
from tests.helpers import MODEL, assert_error

NOT_JSON = {"text/html", "text/plain", "application/octet-stream", "text/event-stream"}


def test_every_v1_operation_has_a_response_schema(client):
    spec = client.get("/openapi.json").json()
    missing = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            content = operation["responses"].get("200", {}).get("content", {})
            schemas = [body.get("schema") for kind, body in content.items() if kind not in NOT_JSON]
            raw = [kind for kind in content if kind in NOT_JSON]
            if not any(schemas) and not raw:
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"operations without a response schema: {missing}"
    assert len([p for p in spec["paths"] if p.startswith("/v1")]) >= 25


def test_list_pages_have_openai_shape_everywhere(client):
    client.post("/v1/profiles", json={"name": "p1", "model": MODEL})
    for path in (
        "/v1/models",
        "/v1/files",
        "/v1/vector_stores",
        "/v1/fine_tuning/jobs",
        "/v1/profiles",
        "/v1/comparisons",
        "/v1/feedback",
    ):
        body = client.get(path).json()
        assert body["object"] == "list" and isinstance(body["data"], list), path
        assert {"first_id", "last_id", "has_more"} <= set(body), path


def test_profiles_and_feedback_paginate_with_cursors(client):
    for n in range(5):
        client.post("/v1/profiles", json={"name": f"p{n}", "model": MODEL})
        client.post(
            "/v1/feedback",
            json={"messages": [{"role": "user", "content": f"q{n}"}], "response": "a", "rating": "up"},
        )
    first = client.get("/v1/profiles", params={"limit": 2}).json()
    assert [p["name"] for p in first["data"]] == ["p0", "p1"]
    assert first["first_id"] == "p0" and first["last_id"] == "p1" and first["has_more"] is True
    rest = client.get("/v1/profiles", params={"limit": 10, "after": "p1"}).json()
    assert [p["name"] for p in rest["data"]] == ["p2", "p3", "p4"] and rest["has_more"] is False
    newest = client.get("/v1/profiles", params={"limit": 1, "order": "desc"}).json()
    assert [p["name"] for p in newest["data"]] == ["p4"]
    ids = [f["id"] for f in client.get("/v1/feedback").json()["data"]]
    assert len(ids) == 5
    before = client.get("/v1/feedback", params={"before": ids[3]}).json()
    assert [f["id"] for f in before["data"]] == ids[:3]
    assert_error(client.get("/v1/feedback", params={"limit": 0}), 400, "limit")
    assert_error(client.get("/v1/comparisons", params={"order": "sideways"}), 400, "order")


@pytest.mark.parametrize(
    ("page", "expected", "more"),
    [
        (Page(limit=2, order="asc"), ["a", "b"], True),
        (Page(limit=2, order="desc"), ["e", "d"], True),
        (Page(limit=9, order="asc", after="c"), ["d", "e"], False),
        (Page(limit=9, order="desc", after="c"), ["b", "a"], False),
        (Page(limit=9, order="asc", before="c"), ["a", "b"], False),
        (Page(limit=1, order="asc", after="a", before="d"), ["c"], True),  # adjacent to `before`
        (Page(limit=2, order="desc", before="b"), ["d", "c"], True),
        (Page(limit=2, order="asc", before="e"), ["c", "d"], True),
        (Page(limit=9, order="asc", after="zz"), [], False),  # a cursor past the end
        (Page(limit=9, order="asc", before="zz"), ["a", "b", "c", "d", "e"], False),
    ],
)
def test_paginate(page, expected, more):
    items = [{"id": i} for i in "abcde"]
    result = paginate(items, page)
    assert [i["id"] for i in result.data] == expected and result.has_more is more
    assert result.first_id == (expected[0] if expected else None)
    assert result.last_id == (expected[-1] if expected else None)


def test_the_document_says_400_not_422_and_docs_work_offline(client):
    spec = client.get("/openapi.json").json()
    codes = {code for ops in spec["paths"].values() for op in ops.values() for code in op["responses"]}
    assert "422" not in codes and "400" in codes
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "/static/swagger-ui/swagger-ui-bundle.js" in page
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
