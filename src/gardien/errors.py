"""Domain errors: each carries a stable code and the HTTP status the web layer answers with.

    GardienError
    ├── NotFound          404  (policy version, case, ...)
    ├── BadRequest        400  (malformed input with a reason)
    ├── Conflict          409
    └── TooManyRequests   429  (rate limit hit)

Messages never contain personal data: they name the field, not its value.
"""

from __future__ import annotations


class GardienError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
