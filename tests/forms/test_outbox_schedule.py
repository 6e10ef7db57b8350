"""``gardien serve`` sends the outbox on its own, within seconds of a submission."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from gardien.app import create_app
from gardien.deps import State
from gardien.forms.models import OutboxMessage
from tests.forms.smtp import submit, use_smtp


def statuses(state: State) -> list[str]:
    with state.sessions() as session:
        return list(session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))


def test_the_server_sends_queued_messages_by_itself(state: State) -> None:
    use_smtp(state, None)
    submit(state)
    assert statuses(state) == ["pending", "pending"]
    app = create_app(state.settings, state=state, scheduler=True, publish_on_start=False)
    with TestClient(app):
        deadline = time.monotonic() + 20
        while statuses(state) != ["sent", "sent"] and time.monotonic() < deadline:
            time.sleep(0.05)
    assert statuses(state) == ["sent", "sent"]
    files = list((state.settings.data_dir / "outbox").iterdir())
    assert len(files) == 2
