"""Reading the visitor's decision from the ``gardien_consent`` cookie, on the server.

A page rendered by Gardien, or by the operator's own Python application, asks ``granted`` before
emitting a tag that needs consent, so the first HTML response never carries one the visitor
did not agree to. Anything unreadable, expired, from another banner revision or from the future
is no consent: the cookie can only ever withhold, never invent, an agreement.

Format (docs/consent.md): ``1:<consent id>:<revision>:<decided at>:<category>=1&<category>=0``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from gardien.register.durations import parse_period

NAME = "gardien_consent"
_ID = re.compile(r"^[0-9a-f]{32}$")
_CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_NUMBER = re.compile(r"^[0-9]{1,12}\Z")
_LAST = int(dt.datetime(9999, 12, 30, tzinfo=dt.UTC).timestamp())
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Decision:
    consent_id: str
    revision: int
    decided_at: dt.datetime
    choices: dict[str, bool]


def parse(value: str | None) -> Decision | None:
    """The decision a cookie value states, or ``None`` if it is not exactly well formed."""
    if not value or len(value) > 1024:
        return None
    parts = value.split(":")
    if len(parts) != 5 or parts[0] != "1" or not _ID.match(parts[1]):
        return None
    # ASCII digits only ("²".isdigit() is true and int() refuses it) and bounded: a revision
    # of 900 digits, or a time past year 9999, once made every page reading the cookie a 500.
    if not _NUMBER.match(parts[2]) or not _NUMBER.match(parts[3]) or int(parts[3]) > _LAST:
        return None
    choices: dict[str, bool] = {}
    for item in parts[4].split("&") if parts[4] else []:
        name, _, flag = item.partition("=")
        if not _CATEGORY.match(name) or flag not in ("0", "1") or name in choices:
            return None
        choices[name] = flag == "1"
    return Decision(
        consent_id=parts[1],
        revision=int(parts[2]),
        decided_at=dt.datetime.fromtimestamp(int(parts[3]), dt.UTC),
        choices=choices,
    )


def current_decision(
    value: str | None, revision: int, lifetime: str | None, now: dt.datetime
) -> Decision | None:
    """The decision if it still applies: this revision, not expired, not from the future."""
    decision = parse(value)
    if decision is None or decision.revision != revision:
        return None
    if decision.decided_at > now + CLOCK_SKEW:
        return None
    if lifetime and parse_period(lifetime).after(decision.decided_at) <= now:
        return None
    return decision


def granted(request: Any, category: str) -> bool:
    """Whether the visitor of ``request`` (a Starlette request) agreed to ``category``, as the
    revision in force reads it; strictly necessary categories are always granted."""
    from gardien.consent.service import current_revision
    from gardien.deps import state_of

    state = state_of(request)
    current = current_revision(state)
    if category in current.required:
        return True
    if category not in current.optional:
        return False
    decision = current_decision(
        request.cookies.get(NAME), current.number, current.lifetime, state.clock.now()
    )
    return bool(decision and decision.choices.get(category, False))
