"""Uploads are judged by their bytes: a renamed script is refused, a real PDF accepted."""

from __future__ import annotations

import pytest

from gardien.errors import BadRequest
from gardien.security.uploads import check_upload

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + b"\x00" * 32


def test_real_documents_are_accepted_with_their_sniffed_type() -> None:
    assert check_upload(PDF).media_type == "application/pdf"
    assert check_upload(PNG).extension == "png"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"<script>alert(1)</script>", "only JPEG, PDF, PNG files are accepted"),
        (b"MZ\x90\x00" + b"\x00" * 64, "only JPEG, PDF, PNG files are accepted"),
        (b"%PDF" + b"x" * (10 * 1024 * 1024), "larger than 10 MB"),
    ],
)
def test_refused_uploads_say_why(content: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        check_upload(content)
