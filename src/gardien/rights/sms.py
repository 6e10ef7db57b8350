"""Text messages to a person who gave only a phone number: the one-time code, the notices.

They go through the same outbox as the e-mails (claims, retries, the disclosure log), under
kinds of their own, and are handed to an ``SmsSender``. The first sender writes each message
to a private file in ``DATA_DIR/sms/``, as the e-mail outbox writes ``.eml`` files when no SMTP
server is configured; an operator plugs a real gateway in by implementing the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gardien.forms.jobs import ClaimedMessage, eml_name, write_private

if TYPE_CHECKING:
    from gardien.deps import State

SMS_CODE = "sms_code"
"""The outbox kind of a portal code sent by text message (its text is stored with the row,
like the e-mailed code's, and dropped once the code is used)."""
SMS_MAX_CHARS = 480
"""Three concatenated GSM segments: a notice longer than this is a bug, not a message."""


class SmsSender(Protocol):
    """Hands one text message over; returns where it was written, if it was."""

    channel: str

    def send(self, to: str, text: str, message_id: str) -> str | None: ...

    def close(self) -> None: ...


class FileSmsSender:
    """Each message becomes a private file (0600 in a 0700 directory) named after its
    Message-ID, written whole then renamed; the first line is the recipient, then the text."""

    channel = "sms"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, to: str, text: str, message_id: str) -> str | None:
        name = eml_name(message_id).removesuffix(".eml") + ".sms"
        return write_private(self.directory, name, f"To: {to}\n\n{text}\n")

    def close(self) -> None:
        return None


class SmsTransport:
    """The outbox's view of an ``SmsSender`` (the outbox's ``Transport`` protocol)."""

    def __init__(self, sender: SmsSender) -> None:
        self.sender = sender
        self.channel = sender.channel

    def deliver(self, sender: str, item: ClaimedMessage, text: str) -> str | None:
        if len(text) > SMS_MAX_CHARS:
            raise ValueError("text message too long")
        return self.sender.send(item.recipient, text, item.message_id)

    def close(self) -> None:
        self.sender.close()


def sms_transport(state: State) -> SmsTransport:
    return SmsTransport(FileSmsSender(state.settings.data_dir / "sms"))
