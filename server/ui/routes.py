"""The UI's pages: each route renders a page shell (`server/web/templates/<page>.html`) with its strings;
the page's script fetches everything it shows from the public API with the user's key.

Pages hold no data, yet with `RAGTUNE_API_KEY` set none is served without the key: the browser sends it
as the `ragtune_key` cookie the login page sets (`server/auth.py` accepts the cookie for page GETs only,
never for the API, which needs the bearer header).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from server.ui.i18n import LANG_COOKIE, request_language, strings_for
from server.ui.pages import NAV

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "web" / "templates")
router = APIRouter(include_in_schema=False)


def render(
    request: Request, template: str, section: str, files: tuple[str, ...], **context: Any
) -> HTMLResponse:
    """The page `template` in the request's language, with the strings of `files` (and common)."""
    lang = request_language(request)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "lang": lang,
            "strings": strings_for(lang, *files),
            "section": section,
            "nav": NAV,
            "auth": bool(request.app.state.settings.api_keys),
            **context,
        },
    )
    if request.query_params.get("lang") == lang:  # the switch was used: remember it
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="strict")
    return response


@router.get("/login")
def login(request: Request, next: str = "/") -> HTMLResponse:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return render(request, "login.html", "login", (), next=target)


@router.get("/status")
def status(request: Request) -> HTMLResponse:
    return render(request, "status.html", "status", ("status",))


@router.get("/")
def chat(request: Request) -> HTMLResponse:
    return render(request, "chat.html", "chat", ("chat",))


@router.get("/knowledge-bases")
def knowledge_bases(request: Request) -> HTMLResponse:
    return render(request, "kbs.html", "knowledge_bases", ("kb",))


@router.get("/knowledge-bases/{vector_store_id}")
def knowledge_base(request: Request, vector_store_id: str) -> HTMLResponse:
    return render(request, "kb.html", "knowledge_bases", ("kb",), vector_store_id=vector_store_id)


@router.get("/fine-tuning")
def fine_tuning(request: Request) -> HTMLResponse:
    return render(request, "jobs.html", "fine_tuning", ("ft",))


@router.get("/fine-tuning/{job_id}")
def fine_tuning_job(request: Request, job_id: str) -> HTMLResponse:
    return render(request, "job.html", "fine_tuning", ("ft",), job_id=job_id)


@router.get("/comparisons")
def comparisons(request: Request) -> HTMLResponse:
    return render(request, "comparisons.html", "comparisons", ("compare",))


@router.get("/comparisons/{comparison_id}")
def comparison(request: Request, comparison_id: str) -> HTMLResponse:
    return render(request, "comparison.html", "comparisons", ("compare",), comparison_id=comparison_id)


@router.get("/arena")
def arena(request: Request) -> HTMLResponse:
    return render(request, "arena.html", "arena", ("arena", "compare"))


@router.get("/models")
def models(request: Request) -> HTMLResponse:
    return render(request, "models.html", "models", ("models",))


def not_found_page(request: Request) -> HTMLResponse:
    """The page a browser gets for an unknown path (404), in its language, with the navigation."""
    response = render(request, "notfound.html", "", ())
    response.status_code = 404
    return response
