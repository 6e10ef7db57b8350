"""Text messages to a person who gave only a phone number: the one-time code, the notices.

They go through the same outbox as the e-mails (claims, retries, the disclosure log), under
kinds of their own, and are handed to an ``SmsSender``. The first sender writes each message
to a private file in ``DATA_DIR/sms/``, as the e-mail outbox writes ``.eml`` files when no SMTP
server is configured; an operator plugs a real gateway in by implementing the protocol.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gardien.forms.jobs import ClaimedMessage, eml_name

if TYPE_CHECKING:
    from gardien.deps import State

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
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        path = (self.directory / eml_name(message_id)).with_suffix(".sms").resolve()
        partial = path.with_suffix(".sms.part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, f"To: {to}\n\n{text}\n".encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(partial, path)
        return str(path)

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
