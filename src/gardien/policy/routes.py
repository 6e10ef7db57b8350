"""Public policy pages and API: /privacy, /cookies, /privacy/versions[/N], /api/policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from gardien.deps import AppState, ReadSession, State
from gardien.errors import N_, NotFound
from gardien.i18n import negotiate
from gardien.policy import render, repository, service
from gardien.policy.document import PolicyDocument
from gardien.policy.models import PolicyVersion
from gardien.policy.pages import PageCache

router = APIRouter()

LangQuery = Annotated[
    str | None,
    Query(max_length=16, description="Language code; an unknown one falls back to the default."),
]


def page_cache(state: State) -> PageCache:
    cache = state.caches.get("policy_pages")
    if not isinstance(cache, PageCache):
        cache = PageCache(state.readers)
        state.caches["policy_pages"] = cache
    return cache


def choose_language(state: State, request: Request, lang: str | None) -> str:
    languages = state.register.languages
    return negotiate(
        lang, request.headers.get("accept-language"), languages.available, languages.default
    )


def _html(html: str, language: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"Content-Language": language, "Vary": "Accept-Language"})


def _document(state: State, version: PolicyVersion, language: str) -> PolicyDocument:
    documents = service.documents_of(version)
    return documents.get(language) or documents[state.register.languages.default]


def _latest_or_404(state: State) -> int:
    number = page_cache(state).latest_number()
    if number is None:
        raise NotFound(N_("no policy has been published yet (run gardien policy publish)"))
    return number


def _render_policy_page(state: State, language: str, page: str, number: int) -> str:
    def render_page() -> str:
        with state.readers() as session:
            version = service.get_version(session, number)
        document = _document(state, version, language)
        sections = document.part("cookies") if page == "cookies" else document.sections
        template = state.env(language).get_template(f"policy/{page}.html")
        return template.render(
            document=document,
            sections=sections,
            version=version,
            page=page,
            languages=state.register.languages.available,
            path=f"/{page}" if page == "cookies" else "/privacy",
        )

    return page_cache(state).page(number, language, page, render_page)


@router.get("/privacy", response_class=HTMLResponse, summary="The privacy policy in force")
def privacy(state: AppState, request: Request, lang: LangQuery = None) -> HTMLResponse:
    language = choose_language(state, request, lang)
    return _html(_render_policy_page(state, language, "privacy", _latest_or_404(state)), language)


@router.get("/cookies", response_class=HTMLResponse, summary="The cookie policy and cookie list")
def cookies(state: AppState, request: Request, lang: LangQuery = None) -> HTMLResponse:
    language = choose_language(state, request, lang)
    return _html(_render_policy_page(state, language, "cookies", _latest_or_404(state)), language)


@router.get("/privacy/versions", response_class=HTMLResponse, summary="Every published version")
def versions(
    state: AppState, session: ReadSession, request: Request, lang: LangQuery = None
) -> HTMLResponse:
    language = choose_language(state, request, lang)
    template = state.env(language).get_template("policy/versions.html")
    html = template.render(
        versions=list(reversed(repository.all_versions(session))),
        languages=state.register.languages.available,
        path="/privacy/versions",
    )
    return _html(html, language)


@router.get(
    "/privacy/versions/{number}",
    response_class=HTMLResponse,
    summary="One published version, with what changed since the previous one",
)
def version_page(
    state: AppState,
    session: ReadSession,
    request: Request,
    number: int,
    lang: LangQuery = None,
) -> HTMLResponse:
    language = choose_language(state, request, lang)
    version = service.get_version(session, number)
    document = _document(state, version, language)
    changes: list[render.DiffLine | None] | None = None
    previous = repository.by_number(session, number - 1) if number > 1 else None
    if previous is not None:
        changes = render.diff(
            render.to_markdown(_document(state, previous, language)),
            render.to_markdown(document),
        )
    template = state.env(language).get_template("policy/version.html")
    html = template.render(
        document=document,
        sections=document.sections,
        version=version,
        previous=previous,
        changes=changes,
        languages=state.register.languages.available,
        path=f"/privacy/versions/{number}",
    )
    return _html(html, language)


class PolicyVersionRead(BaseModel):
    number: int
    effective_at: str
    content_hash: str
    language: str
    document: dict[str, Any]


@router.get("/api/policy", summary="The policy version in force on a date (default: today)")
def policy_api(
    state: AppState,
    session: ReadSession,
    request: Request,
    at: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
    lang: LangQuery = None,
) -> PolicyVersionRead:
    language = choose_language(state, request, lang)
    if at is None:
        version = repository.latest(session)
        if version is None:
            raise NotFound(N_("no policy has been published yet"))
    else:
        version = service.in_force_on(session, at)
    return PolicyVersionRead(
        number=version.number,
        effective_at=version.effective_at.isoformat(),
        content_hash=version.content_hash,
        language=language,
        document=_document(state, version, language).to_json(),
    )
