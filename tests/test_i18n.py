"""Every text a person reads is translated: catalogs complete, not fuzzy, Romanian comma-below."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from gardien.i18n import catalog_path, negotiate, translator

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("fr", "ro")
METHOD_MAP = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}


def _strings(value: object) -> list[str]:
    if isinstance(value, (tuple, list)):
        return [str(v) for v in value]
    return [str(value or "")]


def extracted_ids() -> set[str]:
    ids: set[str] = set()
    for _, _, message, _, _ in extract_from_dir(
        str(ROOT / "src" / "gardien"), METHOD_MAP, OPTIONS, keywords=KEYWORDS
    ):
        ids.add(message[0] if isinstance(message, tuple) else message)
    return ids


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_is_complete_and_not_fuzzy(language: str) -> None:
    with catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    assert not catalog.fuzzy, "the catalog header is marked fuzzy"
    problems = []
    for message in catalog:
        if not message.id:
            continue
        strings = [str(s) for s in _strings(message.string)]
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif not all(s and s.strip() for s in strings):
            problems.append(f"untranslated: {message.id!r}")
    assert problems == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_string_in_the_code_is_in_the_catalog(language: str) -> None:
    with catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    known = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
    missing = sorted(extracted_ids() - known)
    assert missing == [], f"run `make messages` and translate: {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_survive_translation(language: str) -> None:
    with catalog_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    for message in catalog:
        if not message.id:
            continue
        ids = _strings(message.id)
        strings = _strings(message.string)
        wanted = set(re.findall(r"%\(\w+\)[sd]", ids[0]))
        for text in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", text)) == wanted, message.id


def test_romanian_uses_comma_below_never_cedilla() -> None:
    text = catalog_path("ro").read_text(encoding="utf-8")
    assert not re.findall("[şţŞŢ]", text)
    assert "ș" in text
    assert "ț" in text


def test_romanian_plural_forms() -> None:
    t = translator("ro")
    one, few, many = (t.ngettext("%(n)d day", "%(n)d days", n) % {"n": n} for n in (1, 5, 20))
    assert one == "1 zi"
    assert few == "5 zile"
    assert many == "20 de zile"


def test_negotiation_rules() -> None:
    available = ["en", "fr", "ro"]
    assert negotiate(None, "fr-CA;q=0.8, ro;q=0.9", available, "en") == "ro"
    assert negotiate(None, "de, *;q=0.1", available, "en") == "en"
    assert negotiate("RO", "fr", available, "en") == "ro"
    assert negotiate("zz", "fr", available, "en") == "en"
    assert negotiate(None, "garbage;;;q=abc, fr;q=0", available, "en") == "en"
    assert negotiate(None, "", available, "fr") == "fr"
