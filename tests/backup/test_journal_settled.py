"""The erasure journal complete and safely ordered: restrictions (and their lifting), upheld
objections and consent withdrawals made after a backup come back with a restore; an entry is an
intent written before its transaction and settled after it (``done`` / ``aborted``), a crash
between the two settled by the database's own record; and a ``gardien serve`` that finishes an
interrupted restore serves nothing before the replay is over."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gardien.analytics.blocks import WITHDRAWAL, block_list, blocked
from gardien.analytics.models import BLOCK_KEY_INDEX_CONTEXT, AnalyticsBlock
from gardien.backup import journal as journal_module
from gardien.backup.journal import ABORTED, DONE, FILE_NAME, PENDING, ErasureJournal, JournalError
from gardien.backup.service import PENDING as MARKER
from gardien.backup.service import restore_database
from gardien.cli.main import app
from gardien.consent.models import CONSENT_INDEX_CONTEXT, ConsentRecord
from gardien.deps import State
from gardien.forms.jobs import send_due
from gardien.rights import restriction, withdrawal
from gardien.rights.models import RightsCase
from gardien.rights.service import Desk, erase, open_case
from gardien.security.audit import Actor
from gardien.security.crypto import blind_lookups
from gardien.storage.clock import FrozenClock
from gardien.storage.database import unit_of_work
from gardien.storage.restriction import is_restricted
from gardien.storage.subjects import SubjectIdentity
from tests.backup.test_backup import backup, runner, submissions_of
from tests.cli.test_commands import env_of
from tests.rights.conftest import EMAIL, Seeded, seeded  # noqa: F401 - the fixture
from tests.rights.test_restriction import statuses, submit
from tests.support import free_port

AGENT = Actor("cli", "operator")


def journal_of(state: State) -> ErasureJournal:
    return ErasureJournal(state.settings.data_dir / FILE_NAME)


def new_case(state: State, person: Seeded, rights: list[str]) -> str:
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            Desk(state.register, state.providers),
            person.subject,
            rights,
            channel="email",
            now=state.clock.now(),
            actor=AGENT,
            language="en",
        )
        case.verified_at = state.clock.now()
        return case.reference


def case_of(session: Session, reference: str) -> RightsCase:
    return session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()


def act_after_backup(
    person: Seeded,
    out: Path,
    rights: list[str],
    act: Callable[[Session, Desk, RightsCase], object],
) -> tuple[dict[str, object], str]:
    """Take a backup, then open a verified case and ``act`` on it in one transaction."""
    state = person.state
    taken = backup(person, out)
    reference = new_case(state, person, rights)
    with unit_of_work(state.sessions) as session:
        act(session, Desk(state.register, state.providers), case_of(session, reference))
    return taken, reference


def restrict(state: State, reference: str) -> None:
    with unit_of_work(state.sessions) as session:
        restriction.restrict(
            session,
            Desk(state.register, state.providers),
            case_of(session, reference),
            now=state.clock.now(),
            actor=AGENT,
        )


def restore(person: Seeded, taken: dict[str, object]) -> dict[str, object]:
    person.state.engine.dispose()
    block_list.forget(person.state.engine)
    result = runner.invoke(
        app, ["backup", "restore", str(taken["path"]), "--yes"], env=env_of(person.state.settings)
    )
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def reapplied(report: dict[str, object]) -> list[dict[str, object]]:
    entries = report["reapplied"]
    assert isinstance(entries, list)
    return entries


def test_a_restriction_after_the_backup_is_back_and_holds_a_new_contact_message(
    client: TestClient,
    seeded: Seeded,  # noqa: F811
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    state = seeded.state
    taken, reference = act_after_backup(
        seeded,
        tmp_path / "b",
        ["restriction"],
        lambda session, desk, case: restriction.restrict(
            session, desk, case, now=state.clock.now(), actor=AGENT
        ),
    )
    [entry] = journal_of(state).entries()
    assert (entry.kind, entry.state, entry.settled_by) == ("restriction", DONE, "commit")

    [again] = reapplied(restore(seeded, taken))

    assert (again["kind"], again["case"], again["status"]) == ("restriction", reference, "applied")
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)
    # Honoured, not only recorded: the person's new message is stored but held, not e-mailed.
    mine = submit(client, clock, EMAIL, "021 123 4567")
    other = submit(client, clock, "third.person@example.org", "021 999 8888")
    send_due(state, now=clock.now())
    assert statuses(state, mine) == ["held", "held"]
    assert statuses(state, other) == ["sent", "sent"]


def test_a_restriction_lifted_after_the_backup_is_lifted_again_by_the_restore(
    client: TestClient,
    seeded: Seeded,  # noqa: F811
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    state = seeded.state
    reference = new_case(state, seeded, ["restriction"])
    restrict(state, reference)
    taken = backup(seeded, tmp_path / "b")  # the backup holds the person restricted
    with unit_of_work(state.sessions) as session:
        desk, case = Desk(state.register, state.providers), case_of(session, reference)
        notice = "Your restriction will be lifted."
        restriction.announce_lift(session, desk, case, notice, now=clock.now(), actor=AGENT)
        restriction.lift(session, desk, case, now=clock.now(), actor=AGENT)
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)

    [again] = reapplied(restore(seeded, taken))

    assert (again["kind"], again["status"]) == ("restriction_lifted", "applied")
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)
    mine = submit(client, clock, EMAIL, "021 123 4567")
    send_due(state, now=clock.now())
    assert statuses(state, mine) == ["sent", "sent"]


def test_the_restriction_of_a_contested_rectification_after_the_backup_is_back(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Art. 18(1)(a): a proposed rectification restricts the person while it is checked."""
    from gardien.rights import rectification

    state = seeded.state
    taken, reference = act_after_backup(
        seeded,
        tmp_path / "b",
        ["rectification"],
        lambda session, desk, case: rectification.propose(
            session, desk, case, {}, "My surname is misspelt.", now=state.clock.now(), actor=AGENT
        ),
    )
    [entry] = journal_of(state).entries()
    assert (entry.kind, entry.state) == ("restriction", DONE)

    [again] = reapplied(restore(seeded, taken))

    assert (again["kind"], again["case"], again["status"]) == ("restriction", reference, "applied")
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)


def test_an_upheld_objection_after_the_backup_is_back(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = seeded.state
    grounds = "No overriding legitimate grounds."
    taken, _ = act_after_backup(
        seeded,
        tmp_path / "b",
        ["objection"],
        lambda session, desk, case: restriction.decide_objection(
            session,
            desk,
            case,
            "audience_measurement",
            True,
            grounds,
            now=state.clock.now(),
            actor=AGENT,
        ),
    )

    [again] = reapplied(restore(seeded, taken))

    assert (again["kind"], again["status"]) == ("restriction", "applied")
    with state.sessions() as session:
        assert is_restricted(session, "audience_measurement", consent_id=seeded.consent_id)
        assert not is_restricted(session, "contact_forms", email=EMAIL)  # that activity only


def withdrawal_blocks(state: State, consent_id: str) -> list[dt.datetime]:
    lookups = blind_lookups(f"consent:{consent_id}", BLOCK_KEY_INDEX_CONTEXT)
    with state.sessions() as session:
        return list(
            session.scalars(
                select(AnalyticsBlock.created_at).where(
                    AnalyticsBlock.key_index.in_(lookups), AnalyticsBlock.reason == WITHDRAWAL
                )
            )
        )


def test_a_consent_withdrawal_after_the_backup_is_withdrawn_again(
    seeded: Seeded,  # noqa: F811
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    state = seeded.state
    withdrawn_at = clock.now()
    counts: list[dict[str, int]] = []
    taken, reference = act_after_backup(
        seeded,
        tmp_path / "b",
        ["withdraw_consent"],
        lambda session, desk, case: counts.append(
            withdrawal.withdraw(session, desk, case, now=withdrawn_at, actor=AGENT)
        ),
    )
    assert counts[0]["audience_measurement"] == 1
    [entry] = journal_of(state).entries()
    assert (entry.kind, entry.state) == ("withdrawal", DONE)
    text = journal_of(state).path.read_text().lower()
    assert seeded.consent_id.lower() not in text and EMAIL.lower() not in text
    assert entry.block_keys  # the block's blind indexes, never the consent id

    [again] = reapplied(restore(seeded, taken))

    assert (again["kind"], again["case"], again["status"]) == ("withdrawal", reference, "applied")
    assert again["found"]["consent_id"] == 1  # type: ignore[index]
    # Audience measurement refuses hits sent under a consent given before the withdrawal,
    # and honours one given after it, as before the restore.
    assert withdrawal_blocks(state, seeded.consent_id) == [withdrawn_at]
    blocks = block_list.load(state.engine)
    key = [f"consent:{seeded.consent_id}"]
    assert blocked(blocks, key, withdrawn_at - dt.timedelta(days=1))
    assert not blocked(blocks, key, withdrawn_at + dt.timedelta(seconds=1))
    assert not blocked(blocks, [f"consent:{seeded.other_consent_id}"])


def test_a_withdrawal_block_is_recreated_from_the_journal_alone(
    seeded: Seeded,  # noqa: F811
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    """The restored data may hold nothing of the consent id (it was given after the backup):
    the block comes back from the journal's blind indexes."""
    from dataclasses import replace

    from gardien.backup.replay import reapply
    from gardien.security.crypto import ring

    state = seeded.state
    stranger = "0f" * 16
    entry = journal_of(state).append(
        journal_module.WITHDRAWAL, SubjectIdentity(consent_id=stranger), clock.now(), "GR-X"
    )
    with unit_of_work(state.sessions) as session:
        [done] = reapply(session, ring(), state.providers, [replace(entry, state=DONE)])
    assert done.stores == {"analytics_block": 1} and done.found == {}
    assert withdrawal_blocks(state, stranger) == [clock.now()]


# -- ordering: an intent before the transaction, a mark after it ------------------------------


def test_a_restriction_rolled_back_is_marked_aborted_and_not_replayed(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = seeded.state
    taken = backup(seeded, tmp_path / "b")
    reference = new_case(state, seeded, ["restriction"])

    def failing() -> None:
        with unit_of_work(state.sessions) as session:
            restriction.restrict(
                session,
                Desk(state.register, state.providers),
                case_of(session, reference),
                now=state.clock.now(),
                actor=AGENT,
            )
            raise RuntimeError("the transaction fails after the entry was written")

    with pytest.raises(RuntimeError):
        failing()
    [entry] = journal_of(state).entries()
    assert (entry.state, entry.settled_by) == (ABORTED, "commit")

    [again] = reapplied(restore(seeded, taken))

    assert again["status"] == "not_applied"
    with state.sessions() as session:
        assert not is_restricted(session, "contact_forms", email=EMAIL)


def lose_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies between its transaction's end and the mark: no mark is written."""

    def crashed(self: ErasureJournal, *args: object, **kwargs: object) -> None:
        raise JournalError("crashed before the mark")

    monkeypatch.setattr(ErasureJournal, "mark", crashed)


def test_a_crash_between_the_commit_and_the_mark_is_settled_by_the_database(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = seeded.state
    taken = backup(seeded, tmp_path / "b")
    reference = new_case(state, seeded, ["restriction"])
    with monkeypatch.context() as crash:
        lose_marks(crash)
        restrict(state, reference)  # committed; the answer is not turned into an error
    [entry] = journal_of(state).entries()
    assert entry.state == PENDING

    [again] = reapplied(restore(seeded, taken))

    # The restore read the database it replaced: the case's timeline shows the restriction.
    [settled] = journal_of(state).entries()
    assert (settled.state, settled.settled_by) == (DONE, "database")
    assert again["status"] == "applied"
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)


def consent_records(state: State, consent_id: str) -> int:
    with state.sessions() as session:
        lookups = blind_lookups(consent_id, CONSENT_INDEX_CONTEXT)
        return len(
            session.scalars(
                select(ConsentRecord.seq).where(
                    ConsentRecord.consent_id_index.in_(lookups), ConsentRecord.purged.is_(False)
                )
            ).all()
        )


def dying_erasure(state: State, person: Seeded, reference: str) -> None:
    with unit_of_work(state.sessions) as session:
        erase(
            session,
            Desk(state.register, state.providers),
            case_of(session, reference),
            person.subject,
            now=state.clock.now(),
            actor=AGENT,
            notify_person=False,
        )
        raise RuntimeError("the process dies before the commit")


def test_a_crash_before_the_commit_is_settled_as_aborted_and_nothing_is_erased(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = seeded.state
    reference = new_case(state, seeded, ["erasure"])
    taken = backup(seeded, tmp_path / "b")
    with monkeypatch.context() as crash:
        lose_marks(crash)
        with pytest.raises(RuntimeError):
            dying_erasure(state, seeded, reference)
    [entry] = journal_of(state).entries()
    assert (entry.kind, entry.state) == ("erasure", PENDING)
    assert submissions_of(seeded, EMAIL) == 1  # the erasure never happened
    kept = consent_records(state, seeded.consent_id)
    assert kept >= 2

    [again] = reapplied(restore(seeded, taken))

    [settled] = journal_of(state).entries()
    assert (settled.state, settled.settled_by) == (ABORTED, "database")
    assert again["status"] == "not_applied" and again["stores"] == {}
    # Kept, as it was: the person's consent records (which retention keeps for years) were
    # not erased by the replay. (Their contact message of the test's day went by retention.)
    assert consent_records(state, seeded.consent_id) == kept


def test_an_erasure_no_database_can_settle_is_applied_on_the_cautious_side(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database the entry was written against is lost (a restore onto a new machine): the
    restored one holds the case but not the erasure. The erasure is applied, ``unconfirmed``."""
    import gardien.backup.service as backup_service

    taken = backup(seeded, tmp_path / "b")
    with monkeypatch.context() as crash:
        lose_marks(crash)
        erase_by_cli(seeded)
    monkeypatch.setattr(backup_service, "settle_against_current", lambda state, seq: None)

    report = restore(seeded, taken)

    [again] = reapplied(report)
    assert again["status"] == "unconfirmed" and again["stores"]["contact_forms"] == 1  # type: ignore[index]
    assert submissions_of(seeded, EMAIL) == 0


def erase_by_cli(person: Seeded) -> None:
    env = env_of(person.state.settings)
    erased = runner.invoke(app, ["rights", "erase", "--email", EMAIL, "--yes"], env=env)
    assert erased.exit_code == 0, erased.output


def test_an_erasure_is_marked_done_with_the_stores_it_left_alone(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = seeded.state
    taken = backup(seeded, tmp_path / "b")
    erase_by_cli(seeded)
    [entry] = journal_of(state).entries()
    # The case itself is kept as proof (erased 0, kept what it matched): left alone again.
    assert (entry.state, entry.settled_by, entry.skip) == (DONE, "commit", ("rights_requests",))

    [again] = reapplied(restore(seeded, taken))

    assert again["status"] == "applied" and again["left_alone"] == ["rights_requests"]
    assert submissions_of(seeded, EMAIL) == 0


def test_a_crash_after_an_erasure_commit_is_settled_by_its_receipt(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = seeded.state
    taken = backup(seeded, tmp_path / "b")
    with monkeypatch.context() as crash:
        lose_marks(crash)
        erase_by_cli(seeded)
    [entry] = journal_of(state).entries()
    assert entry.state == PENDING  # written before the transaction, its mark lost

    [again] = reapplied(restore(seeded, taken))

    [settled] = journal_of(state).entries()
    # Settled from the receipt of the database the restore replaced, with the same stores
    # left alone as the commit's mark would have named.
    assert (settled.state, settled.settled_by) == (DONE, "database")
    assert settled.skip == ("rights_requests",)
    assert again["status"] == "applied" and again["left_alone"] == ["rights_requests"]
    assert submissions_of(seeded, EMAIL) == 0


# -- an interrupted restore finished by `gardien serve` ----------------------------------------


def test_serve_finishes_an_interrupted_restore_before_it_accepts_a_request(
    seeded: Seeded,  # noqa: F811
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    state = seeded.state
    settings = state.settings
    taken = backup(seeded, tmp_path / "b")
    env = env_of(settings)
    erase_by_cli(seeded)
    reference = new_case(state, seeded, ["restriction"])
    restrict(state, reference)
    # Erasures of people the backup never held: a replay long enough that a server started
    # alongside it (rather than after it) would answer while it runs.
    journal = journal_of(state)
    for number in range(300):
        stranger = SubjectIdentity(
            email=f"stranger{number}@example.org", phone=f"+4072{number:07d}"
        )
        journal.mark(journal.append(journal_module.ERASURE, stranger, clock.now()).seq, DONE)
    state.engine.dispose()
    # The restore stopped after replacing the database: the marker remains, nothing replayed.
    restore_database(settings, state, Path(str(taken["path"])))
    state.engine.dispose()
    marker = settings.data_dir / MARKER
    assert marker.exists()
    assert submissions_of(seeded, EMAIL) == 1  # the erased person is back in the snapshot

    # A real `gardien serve`, probed from the moment it starts: every answer is checked
    # against the marker, which the replay removes once it (and retention) are done.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seen: list[bool] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                answered = httpx.get(f"{url}/healthz", timeout=1).status_code
            except httpx.TransportError:
                continue
            seen.append(answered == 200 and marker.exists())

    watcher = threading.Thread(target=probe)
    watcher.start()
    process = subprocess.Popen(
        [sys.executable, "-m", "gardien", "serve", "--port", str(port)],
        env={**os.environ, **env, "GARDIEN_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(1200):
            if seen or process.poll() is not None:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1]
        assert seen, "gardien serve did not answer"
        assert not marker.exists()
        assert submissions_of(seeded, EMAIL) == 0
        with state.sessions() as session:
            assert is_restricted(session, "contact_forms", email=EMAIL)
    finally:
        stop.set()
        watcher.join()
        process.terminate()
        process.wait(timeout=20)
    assert not any(seen)  # no request was answered while the replay was pending


def test_a_store_an_erasure_kept_under_a_legal_hold_is_not_erased_by_the_replay(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The erasure kept the contact messages (a legal hold in force then); the register the
    restore runs with no longer names the hold, yet the replay keeps them: its done mark says
    the erasure left that store alone."""
    from tests.rights.test_fulfilment import _held

    state = seeded.state
    reference = new_case(state, seeded, ["erasure"])
    taken = backup(seeded, tmp_path / "b")
    with unit_of_work(state.sessions) as session:
        receipt = erase(
            session,
            Desk(_held(state, dt.date(2099, 1, 1)), state.providers),
            case_of(session, reference),
            seeded.subject,
            now=state.clock.now(),
            actor=AGENT,
            notify_person=False,
        )
    forms = next(s for s in receipt["stores"] if s["store"] == "contact_forms")
    assert (forms["erased"], forms["kept"]) == (0, 1)
    [entry] = journal_of(state).entries()
    assert entry.state == DONE and "contact_forms" in entry.skip

    [again] = reapplied(restore(seeded, taken))

    assert again["status"] == "applied"
    assert "contact_forms" in again["left_alone"]  # type: ignore[operator]
    assert "contact_forms" not in again["stores"]  # type: ignore[operator]
    assert again["stores"]["consent_records"] >= 1  # type: ignore[index]  # the rest erased
