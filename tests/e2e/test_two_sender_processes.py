"""Two ``gardien serve`` processes on one database drain one outbox: every message reaches the
SMTP server once (counted by distinct Message-ID), whichever process sent it."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from gardien.deps import State
from gardien.forms.models import OutboxMessage
from tests.forms.smtp import Mailbox, only_notification, smtp_server, submit
from tests.support import gardien_env, serving

MESSAGES = 30


def unsent(state: State) -> int:
    with state.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status != "sent")
            )
            or 0
        )


def test_two_server_processes_send_each_message_once(state: State) -> None:
    only_notification(state)
    queued = {submit(state)[1][0].message_id for _ in range(MESSAGES)}
    assert len(queued) == MESSAGES
    mailbox = Mailbox(delay=0.02)  # slow enough that both processes claim batches
    with smtp_server(mailbox) as port:
        env = gardien_env(
            state.settings.data_dir,
            state.settings.resolved_database_url,
            state.settings.register_file,
        )
        env["GARDIEN_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        with serving(env), serving(env):
            deadline = time.monotonic() + 90
            while unsent(state) and time.monotonic() < deadline:
                time.sleep(0.2)
    assert unsent(state) == 0
    ids = [message.message_id for message in mailbox.received]
    assert len(ids) == MESSAGES, "a message was sent twice or not at all"
    assert set(ids) == queued
