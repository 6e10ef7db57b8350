"""What the banner and panel show, derived from the register: texts, categories, services,
cookies, in every language; its hash; and what changed from one revision to the next.

The *content* is one canonical JSON document covering every language, so its SHA-256 changes
whenever any text, category, service or cookie the visitor could see changes, and that change
makes a new banner revision (``revisions.py``). Gardien's own interface texts (button labels)
come from its catalogs and are part of the content too: a reworded button is a new revision.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gardien.errors import N_
from gardien.i18n import translator
from gardien.policy.document import duration_words
from gardien.register.schema import Register, Text

# Gardien's own interface texts; the register supplies categories, cookies and the title.
TEXTS: dict[str, str] = {
    "title": N_("Cookies and your privacy"),
    "body": N_(
        "With your agreement, we use optional cookies for the purposes described in the "
        "settings. Strictly necessary cookies are always set. You can change your mind at any "
        "time with the cookie button at the bottom of every page."
    ),
    "accept": N_("Accept all"),
    "reject": N_("Reject all"),
    "customise": N_("Customise"),
    "save": N_("Save my choices"),
    "close": N_("Close (counts as refusing)"),
    "manage": N_("Cookie settings"),
    "panel": N_("Cookie settings"),
    "always_on": N_("Always on"),
    "cookie": N_("Cookie"),
    "provider": N_("Provider"),
    "purpose": N_("Purpose"),
    "duration": N_("Duration"),
    "consent_id": N_("Your consent id"),
    "download": N_("Download my consent history"),
    "gpc": N_(
        "Your browser sends the Global Privacy Control signal, so every optional category "
        "is refused. You can still accept them here."
    ),
    "changed": N_("Our cookie information has changed since your last choice:"),
    "policy": N_("Privacy policy"),
}

SELF_SERVICE_TEXTS: dict[str, str] = {
    "heading": N_("Your data in this browser"),
    "intro": N_(
        "You can download or erase what we hold under this browser's consent id and "
        "audience-measurement cookie: holding these cookies is the proof that the data is yours."
    ),
    "cookieless": N_(
        "Visits measured without cookies carry only a daily identifier derived from your "
        "address and browser, which we cannot tie to you (GDPR Art. 11(2)): they are not "
        "included."
    ),
    "export": N_("Download my data"),
    "exported": N_("Your data is downloading; the link downloads it again."),
    "erase": N_("Erase my data"),
    "confirm": N_("Erase the data bound to this browser? This cannot be undone."),
    "erased": N_("Erased: receipt for case %s"),
    "line": N_("%s: %s found, %s erased, %s kept"),
    "failed": N_("That did not work. Please try again later."),
}
"""The cookie panel's self-service texts (rights verified by possession). They are not part of
the banner content: they offer a right, they ask no consent, so a new wording is no new
revision."""

CHANGE_TEXTS = {
    "added": N_("New: %(names)s."),
    "removed": N_("Removed: %(names)s."),
    "changed": N_("Changed: %(names)s."),
    "texts": N_("The banner's wording was updated."),
}


@dataclass(frozen=True)
class Category:
    id: str
    required: bool
    services: tuple[str, ...]


def _tr(text: Text, language: str, default: str) -> str:
    return text.get(language) or text[default]


def categories(register: Register) -> list[Category]:
    """Each consent category with its services: the register activities its cookies serve."""
    found = []
    for category in register.consent_categories:
        services = sorted(
            {c.activity for c in register.cookies if c.category == category.id and c.activity}
        )
        found.append(Category(category.id, category.strictly_necessary, tuple(services)))
    return found


def optional_categories(register: Register) -> list[str]:
    return [c.id for c in register.consent_categories if not c.strictly_necessary]


def language_content(register: Register, language: str) -> dict[str, Any]:
    """Everything shown in one language: interface texts, categories, their cookies."""
    default = register.languages.default
    t = translator(language)
    services = {c.id: c.services for c in categories(register)}
    return {
        "texts": {key: t.gettext(message) for key, message in TEXTS.items()},
        "categories": [
            {
                "id": category.id,
                "title": _tr(category.title, language, default),
                "description": _tr(category.description, language, default),
                "required": category.strictly_necessary,
                "services": list(services[category.id]),
                "cookies": [
                    {
                        "name": cookie.name,
                        "pattern": cookie.pattern,
                        "provider": cookie.provider,
                        "purpose": _tr(cookie.purpose, language, default),
                        "duration": duration_words(cookie.duration, t),
                    }
                    for cookie in register.cookies
                    if cookie.category == category.id
                ],
            }
            for category in register.consent_categories
        ],
    }


def content(register: Register) -> dict[str, Any]:
    """The whole banner content, every language: what a revision archives and hashes."""
    lifetime = register.consent.lifetime if register.consent else None
    return {
        "lifetime": lifetime,
        "languages": {
            language: language_content(register, language)
            for language in register.languages.available
        },
    }


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(document).encode()).hexdigest()


def changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, list[str]]:
    """Category and cookie ids added, removed or changed, and whether wording changed."""
    if previous is None:
        return {}

    def items(lang: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for category in lang["categories"]:
            found[f"category:{category['id']}"] = {
                k: v for k, v in category.items() if k != "cookies"
            }
            for cookie in category["cookies"]:
                found[f"cookie:{cookie['name']}"] = {**cookie, "category": category["id"]}
        return found

    added: set[str] = set()
    removed: set[str] = set()
    changed: set[str] = set()
    for language, new_lang in current["languages"].items():
        old_lang = previous["languages"].get(language)
        if old_lang is None:  # a language added: everything in it is new wording
            changed.update(items(new_lang))
            continue
        before, after = items(old_lang), items(new_lang)
        added |= set(after) - set(before)
        removed |= set(before) - set(after)
        changed |= {k for k in set(before) & set(after) if before[k] != after[k]}
    result = {
        "added": sorted(added),
        "removed": sorted(removed),
        "changed": sorted(changed - added - removed),
    }
    languages_differ = any(
        previous["languages"].get(code, {}).get("texts") != lang["texts"]
        for code, lang in current["languages"].items()
    )
    if languages_differ or previous.get("lifetime") != current.get("lifetime"):
        result["texts"] = ["texts"]
    return {kind: ids for kind, ids in result.items() if ids}


def describe_changes(
    change_ids: dict[str, list[str]], current: dict[str, Any], language: str
) -> str | None:
    """The change message in ``language``: which categories and cookies are new, gone or
    reworded, by the names the visitor sees."""
    if not change_ids:
        return None
    t = translator(language)
    lang = current["languages"].get(language) or next(iter(current["languages"].values()))
    names = {f"category:{c['id']}": c["title"] for c in lang["categories"]}

    def name(item: str) -> str:
        kind, _, ident = item.partition(":")
        return names.get(item, ident) if kind == "category" else ident

    parts = []
    for kind in ("added", "removed", "changed"):
        if change_ids.get(kind):
            joined = ", ".join(name(i) for i in change_ids[kind])
            parts.append(t.gettext(CHANGE_TEXTS[kind]) % {"names": joined})
    if change_ids.get("texts"):
        parts.append(t.gettext(CHANGE_TEXTS["texts"]))
    return " ".join(parts)


def self_service_texts(language: str) -> dict[str, str]:
    t = translator(language)
    return {key: t.gettext(message) for key, message in SELF_SERVICE_TEXTS.items()}
