"""Domain errors: each carries a stable code and the HTTP status the web layer answers with.

    Localised             a message people read, in their language
    └── GardienError
        ├── NotFound          404  (policy version, case, ...)
        ├── BadRequest        400  (malformed input with a reason)
        ├── Conflict          409
        └── TooManyRequests   429  (rate limit hit)

A message is an English template marked with ``N_`` (so ``make messages`` extracts it) and
its parameters, ``%(name)s``-style like the templates' ``_()``: ``message`` is the English
text (logs, JSON for programs, the CLI), ``text(language)`` the translated one (pages).
Messages never contain personal data: they name the field, not its value.
"""

from __future__ import annotations

from gardien.i18n import translator

Param = str | int


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message


def localise(template: str, params: dict[str, Param], language: str) -> str:
    translated = translator(language).gettext(template)
    return translated % params if params else translated


class Localised(Exception):
    """An exception whose message is shown to people, in their language."""

    def __init__(self, message: str, **params: Param) -> None:
        self.template = message
        self.params = params
        self.message = message % params if params else message
        super().__init__(self.message)

    def text(self, language: str) -> str:
        return localise(self.template, self.params, language)


class GardienError(Localised):
    code = "error"
    status = 500


class NotFound(GardienError):
    code = "not_found"
    status = 404


class BadRequest(GardienError):
    code = "bad_request"
    status = 400


class Conflict(GardienError):
    code = "conflict"
    status = 409


class TooManyRequests(GardienError):
    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, retry_after: int, **params: Param) -> None:
        super().__init__(message, **params)
        self.retry_after = retry_after
