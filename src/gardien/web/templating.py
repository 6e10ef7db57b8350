"""One Jinja environment per language, with that language's catalog installed.

Templates live next to their domain (``<domain>/templates/<domain>/``) and the shared layouts
here; autoescape is always on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from gardien.i18n import translator

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [PACKAGE / "web" / "templates", *sorted(PACKAGE.glob("*/templates"))]


_LINK = re.compile(
    r"(?P<url>https?://[^\s<>\"]+[^\s<>\".,;:)])|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
)


def linkify(text: str) -> Markup:
    """Escape ``text`` and turn the web addresses and e-mail addresses in it into links."""
    escaped = str(escape(text))

    def link(match: re.Match[str]) -> str:
        if match.group("url"):
            url = match.group("url")
            return f'<a href="{url}">{url}</a>'
        email = match.group("email")
        return f'<a href="mailto:{email}">{email}</a>'

    return Markup(_LINK.sub(link, escaped))  # noqa: S704 - built from escaped text


def make_environment(language: str) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in dict.fromkeys(TEMPLATE_DIRS)]),
        autoescape=True,
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    t = translator(language)
    env.install_gettext_callables(t.gettext, t.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = language
    env.filters["linkify"] = linkify
    env.globals["consent_granted"] = _consent_granted
    return env


def _consent_granted(request: Any, category: str) -> bool:
    """``{% if consent_granted(request, "audience_measurement") %}``: the visitor's decision as
    the server reads it, so a non-consented tag is never in the first HTML response."""
    from gardien.consent.cookie import granted

    return granted(request, category)


def make_environments(languages: list[str]) -> dict[str, Environment]:
    return {code: make_environment(code) for code in languages}
