"""Translations of Gardien's own text (pages, e-mails, banner) from Babel catalogs.

The ``.po`` files under ``locale/`` are the source of truth and are read directly at start-up
(no compiled ``.mo`` to go stale). English is the source language. ``make messages`` extracts
new strings and updates the catalogs; a test fails on any missing, empty or fuzzy entry.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
SOURCE_LANGUAGE = "en"
DOMAIN = "messages"


def _english_plural(n: int) -> int:
    return 0 if n == 1 else 1


@dataclass(frozen=True)
class Translator:
    language: str
    messages: dict[str, str] = field(default_factory=dict)
    plurals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    plural_form: Callable[[int], int] = _english_plural

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The form the language uses for ``n`` (Romanian has three: 1 zi, 2 zile, 20 de zile)."""
        forms = self.plurals.get(singular)
        if not forms:
            return singular if n == 1 else plural
        index = self.plural_form(n)
        return forms[index] if index < len(forms) and forms[index] else forms[-1]


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translator(language: str) -> Translator:
    if language == SOURCE_LANGUAGE:
        return Translator(language)
    path = catalog_path(language)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    messages: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, (tuple, list)):
            strings = message.string
            if isinstance(strings, (tuple, list)) and all(strings):
                plurals[str(message.id[0])] = tuple(str(s) for s in strings)
        elif message.string:
            messages[str(message.id)] = str(message.string)
    plural_form: Callable[[int], int] = gettext.c2py(catalog.plural_expr)
    return Translator(language, messages, plurals, plural_form)


_ACCEPT_ITEM = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q=([0-9.]+))?\s*$"
)


def negotiate(
    query: str | None, accept_language: str | None, available: list[str], default: str
) -> str:
    """Pick the language: a valid ``?lang=`` wins, then Accept-Language by quality, else default."""
    if query:
        code = query.strip().lower()
        return code if code in available else default
    if accept_language:
        ranked: list[tuple[float, int, str]] = []
        for position, item in enumerate(accept_language.split(",")[:20]):
            match = _ACCEPT_ITEM.match(item)
            if not match:
                continue
            try:
                quality = float(match.group(2)) if match.group(2) else 1.0
            except ValueError:
                continue
            ranked.append((-quality, position, match.group(1).lower()))
        for negative_quality, _, tag in sorted(ranked):
            if negative_quality >= 0:
                continue
            primary = tag.split("-")[0]
            if primary in available:
                return primary
    return default
