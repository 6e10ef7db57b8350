"""Nothing acknowledged is lost (DESIGN principle 5): a real ``gardien serve`` under a mixed
write load is killed with SIGKILL, restarted, and every write it had answered 2xx is found
intact; SQLite's integrity check passes; the outbox still delivers every message to a real SMTP
server, each exactly once except a message the crash caught between the server's acceptance
and the commit of its ``sent`` mark (sent again, recognised by its Message-ID).

Bounded: the load runs until a fixed number of writes is acknowledged (or 60 s pass), then the
kill; the restarted server has 90 s to drain the outbox.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select, text, update

from gardien.config import Settings
from gardien.forms.jobs import CLAIM_TTL
from gardien.forms.models import OutboxMessage
from gardien.runtime import build_state, start
from tests.e2e.load import KINDS, Load, connected, missing, unsent
from tests.forms.smtp import Mailbox, smtp_server
from tests.support import gardien_env, serving

ACKNOWLEDGED = 160
"""Writes acknowledged before the kill (about 40 of each kind)."""
WORKERS = 6
BACKLOG = 5
"""Messages still to send when the kill comes, so it falls inside a batch."""


def outbox_states(database_url: str) -> dict[str, str]:
    """Every outbox message's status by Message-ID, read straight from the database."""
    with connected(database_url) as connection:
        rows = connection.execute(select(OutboxMessage.message_id, OutboxMessage.status))
        return {str(message_id): str(status) for message_id, status in rows}


def expire_claims(database_url: str) -> None:
    """Let the dead process's claims run out: what ``CLAIM_TTL`` (5 minutes) of waiting
    would do, without the wait (the clock is the one thing tests may fake)."""
    with connected(database_url, write=True) as connection:
        claimed = connection.execute(
            select(OutboxMessage.id, OutboxMessage.claimed_until).where(
                OutboxMessage.status == "sending"
            )
        ).all()
        for row_id, until in claimed:
            connection.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id)
                .values(claimed_until=until - CLAIM_TTL)
            )


def integrity(database_url: str) -> str:
    with connected(database_url) as connection:
        return str(connection.execute(text("PRAGMA integrity_check")).scalar_one())


def test_acknowledged_writes_survive_sigkill(
    tmp_path: Path, register_path: Path, database_url: str
) -> None:
    # Not a test of the fill time: the load sends each form as soon as it has it.
    source = register_path.read_text(encoding="utf-8")
    register_path.write_text(source.replace("min_fill_seconds: 3", "min_fill_seconds: 0", 1))
    env = gardien_env(tmp_path / "data", database_url, register_path)
    extra = () if database_url.startswith("sqlite") else ("--upgrade",)
    mailbox = Mailbox(delay=0.05)  # a batch takes long enough for the kill to fall in it
    with smtp_server(mailbox) as port:
        env["GARDIEN_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        with serving(env, *extra) as server:
            load = Load([server.url])
            pool = load.run(WORKERS)
            deadline = time.monotonic() + 60
            # Kill once enough writes are acknowledged and the sender is in the middle of a
            # batch: a message has just reached the SMTP server and more wait to be sent.
            seen = 0
            while time.monotonic() < deadline:
                arrived = len(mailbox.message_ids())
                if len(load.acked()) >= ACKNOWLEDGED and arrived > seen:
                    if unsent(database_url) >= BACKLOG:
                        break
                seen = arrived
                time.sleep(0.01)
            server.process.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
            server.process.wait()
            load.stop.set()
            pool.shutdown(wait=True)
        # A message whose data reached the SMTP server just before the kill is kept once the
        # server's handler (delay 0.05 s) returns: let it, before taking stock.
        time.sleep(0.5)
        delivered_before = Counter(mailbox.message_ids())
        after_kill = outbox_states(database_url)
        if database_url.startswith("sqlite"):
            assert integrity(database_url) == "ok"
        # The only messages that may arrive twice: accepted by the SMTP server while the
        # database still says they are not sent (the crash fell between the two).
        in_the_gap = {
            message_id
            for message_id, status in after_kill.items()
            if status != "sent" and message_id in delivered_before
        }
        caught = [m for m, status in after_kill.items() if status == "sending"]
        assert caught, "the kill did not fall in a sending batch"
        expire_claims(database_url)
        with serving(env) as server:
            drained = time.monotonic() + 90
            while time.monotonic() < drained:
                if all(s == "sent" for s in outbox_states(database_url).values()):
                    break
                time.sleep(0.2)
    acknowledged = load.acked()
    assert {a.kind for a in acknowledged} == set(KINDS), load.statuses
    assert len(acknowledged) >= ACKNOWLEDGED, load.statuses
    assert not [s for s in load.statuses if s >= 500], load.statuses
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, register_file=register_path
    )
    state = build_state(settings)
    start(state)  # the key ring, to read the stored values back decrypted
    try:
        lost = missing(state, acknowledged)
    finally:
        state.engine.dispose()
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    if database_url.startswith("sqlite"):
        assert integrity(database_url) == "ok"
    final = outbox_states(database_url)
    assert final and all(status == "sent" for status in final.values()), Counter(final.values())
    delivered = Counter(mailbox.message_ids())
    assert set(delivered) == set(final), "a queued message never reached the SMTP server"
    twice = {message_id for message_id, times in delivered.items() if times > 1}
    assert twice <= in_the_gap, f"sent twice outside the crash window: {twice - in_the_gap}"
    assert max(delivered.values()) <= 2
