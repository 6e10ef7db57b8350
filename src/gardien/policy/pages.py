"""Rendered policy pages, cached per (version, language, page): rendered once per version.

The latest version number is re-read from the database at most every ``ttl`` seconds, so a
version published by another instance shows up quickly without a query per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from gardien.policy import repository


class PageCache:
    def __init__(self, sessions: sessionmaker[Session], ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._latest: tuple[float, int | None] = (0.0, None)
        self._pages: dict[tuple[int, str, str], str] = {}
        self._lock = threading.Lock()

    def latest_number(self) -> int | None:
        checked_at, number = self._latest
        if number is not None and time.monotonic() - checked_at < self._ttl:
            return number
        with self._sessions() as session:
            number = repository.latest_number(session)
        self._latest = (time.monotonic(), number)
        return number

    def forget_latest(self) -> None:
        self._latest = (0.0, None)

    def page(self, number: int, language: str, name: str, render: Callable[[], str]) -> str:
        key = (number, language, name)
        cached = self._pages.get(key)
        if cached is not None:
            return cached
        html = render()
        with self._lock:
            if len(self._pages) > 512:
                self._pages.clear()
            self._pages[key] = html
        return html
