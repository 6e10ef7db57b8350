"""Uploaded documents (a scanned letter, a proof of mandate): size-limited and typed by their
content, never by the name or the Content-Type the browser claims."""

from __future__ import annotations

from dataclasses import dataclass

import filetype

from gardien.errors import N_, BadRequest

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ALLOWED_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})


@dataclass(frozen=True)
class CheckedUpload:
    content: bytes
    media_type: str
    extension: str


def check_upload(
    content: bytes,
    allowed: frozenset[str] = ALLOWED_TYPES,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> CheckedUpload:
    """The upload with its sniffed type, or ``BadRequest`` saying why it is refused."""
    if not content:
        raise BadRequest(N_("the file is empty"))
    if len(content) > max_bytes:
        raise BadRequest(N_("the file is larger than %(size)s MB"), size=max_bytes // (1024 * 1024))
    kind = filetype.guess(content[:8192])
    if kind is None or kind.mime not in allowed:
        names = ", ".join(sorted(t.split("/")[1].upper() for t in allowed))
        raise BadRequest(
            N_("only %(types)s files are accepted (judged by their content)"), types=names
        )
    return CheckedUpload(content, kind.mime, kind.extension)
