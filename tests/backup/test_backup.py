"""``gardien backup create|restore|purge``: encrypted snapshots on both databases, the erasure
journal replayed by a restore, retired master keys kept while a backup needs them, and the
register's backup retention."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from gardien.analytics.models import AnalyticsHit, AnalyticsSalt
from gardien.backup import archive
from gardien.backup.journal import FILE_NAME, ErasureJournal
from gardien.backup.service import create, needed_masters, read_catalogue
from gardien.cli.main import app
from gardien.forms.models import FormSubmission
from gardien.forms.provider import EMAIL_INDEX
from gardien.retention.models import PurgeReceipt
from gardien.security.crypto import blind_lookups
from gardien.security.keys import keys_path, read_keys
from gardien.storage.clock import FrozenClock
from tests.cli.test_commands import env_of
from tests.rights.conftest import EMAIL, IP, PHONE, Seeded, seeded  # noqa: F401 - the fixture

runner = CliRunner()
SALT = bytes(range(32))


def submissions_of(person: Seeded, email: str) -> int:
    with person.state.sessions() as session:
        lookups = blind_lookups(email, EMAIL_INDEX, "email")
        return int(
            session.scalar(
                select(func.count())
                .select_from(FormSubmission)
                .where(FormSubmission.email_index.in_(lookups))
            )
            or 0
        )


def backup(person: Seeded, out: Path) -> dict[str, object]:
    result = runner.invoke(
        app, ["backup", "create", "--out", str(out)], env=env_of(person.state.settings)
    )
    assert result.exit_code == 0, result.output
    printed: dict[str, object] = json.loads(result.stdout)
    return printed


def with_salt(person: Seeded) -> None:
    with person.state.sessions.begin() as session:
        session.add(AnalyticsSalt(day=dt.date(2026, 3, 10), salt=SALT))


def test_restore_replays_the_erasure_made_after_the_backup(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    taken = backup(seeded, tmp_path / "backups")
    assert submissions_of(seeded, EMAIL) == 1
    erased = runner.invoke(app, ["rights", "erase", "--email", EMAIL, "--yes"], env=env)
    assert erased.exit_code == 0, erased.output
    case = json.loads(erased.stdout)["case"]
    assert submissions_of(seeded, EMAIL) == 0
    journal = (seeded.state.settings.data_dir / FILE_NAME).read_text()
    assert EMAIL.lower() not in journal.lower() and case in journal
    seeded.state.engine.dispose()

    restored = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)

    assert restored.exit_code == 0, restored.output
    report = json.loads(restored.stdout)
    assert report["backup"] == taken["backup"]
    [again] = report["reapplied"]
    assert (again["kind"], again["case"], again["failed"]) == ("erasure", case, [])
    assert again["found"]["email"] == 1
    assert again["stores"]["contact_forms"] == 1
    assert EMAIL.lower() not in restored.stdout.lower()
    # Ana does not come back. The other person of the backup did, and was then purged by the
    # retention run that follows the replay (the command's clock is today's, the submissions
    # were made on the test's day): one row, not two.
    assert submissions_of(seeded, EMAIL) == 0
    retention = {r["activity"]: r["rows"] for r in report["retention"]}
    assert retention["contact_forms"] == 1, report["retention"]
    # The marker is gone: a later start replays nothing twice.
    assert not (seeded.state.settings.data_dir / "restore-pending.json").exists()
    listed = runner.invoke(
        app, ["rights", "export", "--email", EMAIL, "--out", str(tmp_path / "a.zip")], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["found"]["contact_forms"] == 0


def test_a_restore_without_later_erasures_reapplies_nothing(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    runner.invoke(app, ["rights", "erase", "--email", EMAIL, "--yes"], env=env)
    taken = backup(seeded, tmp_path / "b")
    assert taken["journal_seq"] == 1
    seeded.state.engine.dispose()
    restored = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["reapplied"] == []
    assert submissions_of(seeded, EMAIL) == 0


def _snapshot_bytes(person: Seeded, path: Path) -> bytes:
    target = io.BytesIO()
    archive._open(path, read_keys(person.state.settings), target)
    return target.getvalue()


def test_a_backup_holds_no_personal_value_in_clear_and_no_salt(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    with_salt(seeded)
    taken = backup(seeded, tmp_path / "b")
    path = Path(str(taken["path"]))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    sealed = path.read_bytes()
    clear_values = [EMAIL, PHONE, "021 123 4567", IP, seeded.consent_id, "Ionescu"]
    for value in clear_values:
        assert value.encode() not in sealed
        assert value.lower().encode() not in sealed.lower()
    assert SALT not in sealed
    snapshot = _snapshot_bytes(seeded, path)
    # Even decrypted, the snapshot holds personal fields only as ciphertext...
    for value in (EMAIL, PHONE, "Ionescu"):
        assert value.encode() not in snapshot
    # ...and no salt: the table is there, empty.
    assert SALT not in snapshot
    if seeded.state.settings.is_sqlite:
        copy = tmp_path / "copy.db"
        copy.write_bytes(snapshot)
        database = sqlite3.connect(copy)
        assert database.execute("SELECT count(*) FROM analytics_salt").fetchone() == (0,)
        assert database.execute("SELECT count(*) FROM form_submission").fetchone() == (2,)
        database.close()
    else:
        dump = tmp_path / "copy.dump"
        dump.write_bytes(snapshot)
        listing = subprocess.run(
            ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
        ).stdout
        data = {line.split()[-2] for line in listing.splitlines() if " TABLE DATA " in line}
        tables = {line.split()[-2] for line in listing.splitlines() if " TABLE " in line}
        assert "form_submission" in data and "analytics_salt" in tables
        assert "analytics_salt" not in data
    with seeded.state.sessions() as session:  # the live database keeps its salt
        assert session.scalar(select(func.count()).select_from(AnalyticsSalt)) == 1


def test_wrong_keys_file_exits_2_and_leaves_the_database_alone(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    taken = backup(seeded, tmp_path / "b")
    runner.invoke(app, ["rights", "erase", "--email", EMAIL, "--yes"], env=env)
    keys_file = keys_path(seeded.state.settings)
    saved = keys_file.read_bytes()
    payload = json.loads(saved)
    # Same key id, other key bytes: the file does not authenticate.
    payload["masters"][payload["active_master"]] = payload["hmac_key"]
    keys_file.write_text(json.dumps(payload))
    os.chmod(keys_file, 0o600)
    wrong = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)
    assert wrong.exit_code == 2
    assert "does not authenticate" in wrong.stderr and "Traceback" not in wrong.output
    # A keys file without the backup's master at all.
    payload["masters"] = {"0000000000000000": payload["hmac_key"]}
    payload["active_master"] = "0000000000000000"
    keys_file.write_text(json.dumps(payload))
    missing = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)
    assert missing.exit_code == 2 and "needs master key" in missing.stderr
    keys_file.write_bytes(saved)
    # A damaged file and a file that is no backup.
    damaged = tmp_path / "damaged.gbk"
    data = bytearray(Path(str(taken["path"])).read_bytes())
    data[-40] ^= 0x01
    damaged.write_bytes(bytes(data))
    bad = runner.invoke(app, ["backup", "restore", str(damaged), "--yes"], env=env)
    assert bad.exit_code == 2 and "does not authenticate" in bad.stderr
    stranger = tmp_path / "notes.txt"
    stranger.write_text("hello")
    other = runner.invoke(app, ["backup", "restore", str(stranger), "--yes"], env=env)
    assert other.exit_code == 2 and "not a Gardien backup" in other.stderr
    unconfirmed = runner.invoke(app, ["backup", "restore", str(taken["path"])], env=env)
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.stderr
    # Nothing was restored: the erasure still holds, the other person is still there.
    assert submissions_of(seeded, EMAIL) == 0
    assert submissions_of(seeded, "someone.else@example.org") == 1


def test_backups_older_than_the_register_period_are_purged_by_retention_with_a_receipt(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    from gardien.retention.service import run_retention

    state = seeded.state
    [activity] = [a for a in state.register.activities if a.storage == "backup"]
    assert activity.retention.period == "P35D"  # the seed register's promise
    clock = state.clock
    assert isinstance(clock, FrozenClock)
    first = create(state, tmp_path / "b")
    old_master = first.header.master_id
    clock.advance(dt.timedelta(days=20))
    # A master rotation: the old master is retired but kept, as the first backup needs it.
    state.keys.rotate_master()
    assert state.keys.prune_masters(needed_masters(state.settings)) == []
    assert old_master in read_keys(state.settings).masters
    clock.advance(dt.timedelta(days=16))
    second = create(state, tmp_path / "b")

    results = run_retention(state.sessions, state.register, state.stores, state.clock)

    [result] = [r for r in results if r.activity == activity.id]
    assert (result.outcome.value, result.rows) == ("purged", 1)
    assert not first.path.exists() and second.path.exists()
    assert [e["id"] for e in read_catalogue(state.settings)] == [second.header.id]
    with state.sessions() as session:
        [receipt] = session.scalars(
            select(PurgeReceipt).where(PurgeReceipt.activity == activity.id)
        )
    assert (receipt.rows_affected, receipt.period, receipt.status) == (1, "P35D", "purged")
    # No retained backup needs the old master any more: the next cleanup forgets it.
    assert state.keys.prune_masters(needed_masters(state.settings)) == [old_master]
    assert old_master not in read_keys(state.settings).masters
    # The second backup, under the new master, still opens.
    assert _snapshot_bytes(seeded, second.path)


def test_journal_survives_restore_and_holds_only_blind_indexes(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = env_of(seeded.state.settings)
    taken = backup(seeded, tmp_path / "b")
    runner.invoke(
        app,
        ["rights", "erase", "--phone", PHONE, "--consent-id", seeded.consent_id, "--yes"],
        env=env,
    )
    journal = ErasureJournal(seeded.state.settings.data_dir / FILE_NAME)
    [entry] = list(journal.entries())
    text = journal.path.read_text()
    # The phone as typed in the form ("021 123 4567") without its spaces: a short piece such
    # as "021" alone turns up by chance in the hexadecimal of the blind indexes.
    for value in (PHONE, seeded.consent_id, "0211234567"):
        assert value not in text
    assert entry.identified_by == ["phone", "consent_id"]
    assert all(":" in v for values in entry.indexes.values() for v in values)
    saved = journal.path.read_bytes()
    seeded.state.engine.dispose()
    restored = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)
    assert restored.exit_code == 0, restored.output
    # The restore did not replace the journal: it only appended the marks settling it.
    assert journal.path.read_bytes().startswith(saved)
    [again] = json.loads(restored.stdout)["reapplied"]
    assert again["found"] == {"consent_id": 1, "phone": 1}
    assert again["stores"]["consent_records"] >= 1


def test_backup_create_refuses_a_file_as_out(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(
        app, ["backup", "create", "--out", str(target)], env=env_of(seeded.state.settings)
    )
    assert result.exit_code == 2 and "not a directory" in result.stderr
    assert shutil.which("pg_dump")


def test_a_restriction_made_after_the_backup_holds_again_after_a_restore(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    from gardien.rights import restriction
    from gardien.rights.models import RightsCase
    from gardien.rights.service import Desk
    from gardien.security.audit import Actor
    from gardien.storage.database import unit_of_work
    from gardien.storage.restriction import is_restricted
    from tests.rights.test_restriction import verified_case

    state = seeded.state
    env = env_of(state.settings)
    taken = backup(seeded, tmp_path / "b")
    reference = verified_case(state, seeded)
    with unit_of_work(state.sessions) as session:
        case = session.scalars(select(RightsCase).where(RightsCase.reference == reference)).one()
        restriction.restrict(
            session,
            Desk(state.register, state.providers),
            case,
            now=state.clock.now(),
            actor=Actor("cli", "operator"),
        )
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)
    state.engine.dispose()

    restored = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)

    assert restored.exit_code == 0, restored.output
    [again] = json.loads(restored.stdout)["reapplied"]
    assert (again["kind"], again["case"]) == ("restriction", reference)
    assert again["stores"]["rights_restriction"] == 5  # e-mail, phone, consent id, visitor, IP
    with state.sessions() as session:
        assert is_restricted(session, "contact_forms", email=EMAIL)
        assert is_restricted(session, "audience_measurement", consent_id=seeded.consent_id)
        assert not is_restricted(session, "contact_forms", email="someone.else@example.org")


def test_backup_of_a_serving_instance_is_consistent_and_restores(
    tmp_path: Path, database_url: str, register_path: Path
) -> None:
    """Online: ``backup create`` while a real ``gardien serve`` writes connection-log rows for
    every request; the restored database holds a count between the one before and after."""
    import threading
    import time

    import httpx

    from tests.support import gardien, gardien_env, serving

    env = gardien_env(tmp_path / "data", database_url, register_path)

    def logged() -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(text("SELECT count(*) FROM connection_log")).scalar_one()
                )
        finally:
            engine.dispose()

    stop = threading.Event()
    with serving(env, "--upgrade") as server:

        def load() -> None:
            with httpx.Client(base_url=server.url) as client:
                while not stop.is_set():
                    assert client.get("/privacy").status_code == 200

        workers = [threading.Thread(target=load) for _ in range(2)]
        for worker in workers:
            worker.start()
        try:
            for _ in range(600):  # the load is running: rows arrive within seconds
                if logged() >= 20:
                    break
                time.sleep(0.05)
            assert logged() >= 20
            before = logged()
            made = gardien("backup", "create", env=env)
            after = logged()
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    assert made.returncode == 0, made.stderr
    assert after > before
    restored = gardien("backup", "restore", json.loads(made.stdout)["path"], "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    assert before <= logged() <= after


def test_a_sealed_file_that_is_no_snapshot_is_refused_and_changes_nothing(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Right key, right header, but the content is not a database: exit 2, nothing touched."""
    env = env_of(seeded.state.settings)
    taken = archive.read_header(Path(str(backup(seeded, tmp_path / "b")["path"])))
    forged = tmp_path / "forged.gbk"
    keys = read_keys(seeded.state.settings)
    with forged.open("wb") as target:
        archive._seal(io.BytesIO(b"not a database " * 1000), target, taken, keys.master)
    seeded.state.engine.dispose()
    result = runner.invoke(app, ["backup", "restore", str(forged), "--yes"], env=env)
    assert result.exit_code == 2, result.output
    assert ("integrity check" in result.stderr) or ("pg_restore failed" in result.stderr)
    assert "Traceback" not in result.output
    assert submissions_of(seeded, EMAIL) == 1
    assert not (seeded.state.settings.data_dir / "restore-pending.json").exists()


COOKIELESS = "0123456789abcdef"
"""A cookieless visitor id: the day's keyed hash, stored in clear in ``analytics_hit`` with no
blind index of its own."""
BYSTANDER = "fedcba9876543210"


def hits_of(person: Seeded, visitor: str) -> int:
    with person.state.sessions() as session:
        query = select(func.count()).select_from(AnalyticsHit)
        return int(session.scalar(query.where(AnalyticsHit.visitor_id == visitor)) or 0)


def test_an_erasure_by_visitor_id_made_after_the_backup_is_replayed_by_the_restore(
    seeded: Seeded,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Today's hits, so the retention run that follows the replay keeps them: only the replay
    # can make the visitor's go.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    with seeded.state.sessions.begin() as session:
        session.add_all(
            AnalyticsHit(
                site_id=1,
                received_at=now + dt.timedelta(seconds=number),
                visitor_id=visitor,
                network="203.0.0.0",
                action="pageview",
                new_visit=0,
                consented=0,
            )
            for number, visitor in enumerate([COOKIELESS] * 3 + [BYSTANDER] * 2)
        )
    env = env_of(seeded.state.settings)
    taken = backup(seeded, tmp_path / "backups")
    erased = runner.invoke(
        app, ["rights", "erase", "--visitor-id", COOKIELESS.upper(), "--yes"], env=env
    )
    assert erased.exit_code == 0, erased.output
    case = json.loads(erased.stdout)["case"]
    assert hits_of(seeded, COOKIELESS) == 0
    journal = (seeded.state.settings.data_dir / FILE_NAME).read_text()
    assert COOKIELESS not in journal.lower() and case in journal
    seeded.state.engine.dispose()

    restored = runner.invoke(app, ["backup", "restore", str(taken["path"]), "--yes"], env=env)

    assert restored.exit_code == 0, restored.output
    assert COOKIELESS not in restored.stdout.lower()
    [again] = json.loads(restored.stdout)["reapplied"]
    assert (again["kind"], again["case"], again["failed"]) == ("erasure", case, [])
    assert again["found"] == {"visitor_id": 1}
    assert again["stores"] == {"audience_measurement": 3}
    # The restore returned before anything could be served: the visitor is gone already, the
    # other visitor's hits of the same minutes are back.
    assert hits_of(seeded, COOKIELESS) == 0
    assert hits_of(seeded, BYSTANDER) == 2
