"""Command groups and their shared plumbing (settings, state, error handling)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from gardien.config import Settings
from gardien.deps import State
from gardien.register.loader import RegisterError, load_register
from gardien.register.schema import Register
from gardien.security.keys import KeysError, init_keys
from gardien.storage.locks import LockBusy

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from gardien.rights.models import RightsCase
    from gardien.rights.service import Desk
    from gardien.security.audit import Actor
    from gardien.storage.subjects import SubjectIdentity

app = typer.Typer(
    help="Gardien: a privacy policy that runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Secret keys.", no_args_is_help=True)
register_app = typer.Typer(help="The processing register.", no_args_is_help=True)
policy_app = typer.Typer(
    help="The privacy policy generated from the register.", no_args_is_help=True
)
retention_app = typer.Typer(help="Retention purges and their status.", no_args_is_help=True)
admin_app = typer.Typer(help="Admin accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
consent_app = typer.Typer(help="Proof-of-consent records.", no_args_is_help=True)
rights_app = typer.Typer(help="Data-subject requests.", no_args_is_help=True)
analytics_app = typer.Typer(help="Audience-measurement reports.", no_args_is_help=True)
backup_app = typer.Typer(help="Encrypted backups and restores.", no_args_is_help=True)
for group, name in (
    (backup_app, "backup"),
    (admin_app, "admin"),
    (analytics_app, "analytics"),
    (audit_app, "audit"),
    (consent_app, "consent"),
    (db_app, "db"),
    (keys_app, "keys"),
    (register_app, "register"),
    (policy_app, "policy"),
    (retention_app, "retention"),
    (rights_app, "rights"),
):
    app.add_typer(group, name=name)


def out() -> Console:
    """A console sized for the terminal (or ``COLUMNS``) at the time of printing.

    Rich is imported here, not at the top: ``serve`` never needs it and starts faster."""
    from rich.console import Console

    return Console()


def err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def progress_bar(label: str, count: str) -> Progress:
    """A progress bar on standard error that vanishes when done: ``label`` and ``count`` are
    the bar's two text columns (rich markup over the task's fields)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn(count),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )


def new_table(*columns: str) -> Table:
    from rich.table import Table

    return Table(*columns)


class Lang(StrEnum):
    en = "en"
    fr = "fr"
    ro = "ro"


class DocFormat(StrEnum):
    html = "html"
    md = "md"
    json = "json"


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"
    html = "html"


def fail(lines: list[str] | str, code: int = 2) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        err().print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the variable
        fail(f"invalid GARDIEN_* setting: {str(exc).splitlines()[0]}")


def read_register(path: Path) -> Register:
    try:
        return load_register(path)
    except RegisterError as exc:
        fail([str(p) for p in exc.problems])


@contextmanager
def running(register: Register | None = None, *, migrate: bool = True) -> Iterator[State]:
    """Build the state the commands share with ``serve``, upgrading SQLite if needed."""
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import pending, upgrade

    config = settings()
    try:
        state = build_state(config, register=register or read_register(config.register_file))
    except KeysError as exc:
        fail(str(exc))
    try:
        try:
            needs_upgrade = pending(state.engine)
        except SQLAlchemyError as exc:
            fail(f"cannot reach the database ({type(exc).__name__}): check GARDIEN_DATABASE_URL")
        if needs_upgrade:
            if config.is_sqlite and migrate:
                upgrade(state.engine)
            else:
                fail(
                    "the database has pending migrations: run `gardien db upgrade` "
                    "(or `gardien serve --upgrade`)"
                )
        try:
            start(state)
        except KeysError as exc:
            fail(str(exc))
        yield state
    finally:
        state.engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    upgrade: Annotated[bool, typer.Option(help="Apply pending migrations first.")] = False,
) -> None:
    """Serve Gardien (policy pages, APIs, admin) and run the scheduled jobs."""
    import uvicorn

    from gardien import logs
    from gardien.app import create_app
    from gardien.runtime import build_state, start
    from gardien.storage.migrate import pending, upgrade_fast

    config = settings()
    logs.configure(config.log_level)
    register = read_register(config.register_file)
    try:
        state = build_state(config, register=register)
    except KeysError as exc:
        fail(str(exc))
    try:
        if pending(state.engine):
            if config.is_sqlite or upgrade:
                upgrade_fast(state.engine)
            else:
                fail(
                    "the PostgreSQL database has pending migrations: run `gardien db upgrade` "
                    "or start with `gardien serve --upgrade`"
                )
    except SQLAlchemyError as exc:
        fail(f"cannot reach the database ({type(exc).__name__}): check GARDIEN_DATABASE_URL")
    try:
        start(state)
    except KeysError as exc:
        fail(str(exc))
    uvicorn.run(
        create_app(config, state=state),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=config.trusted_proxies,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from gardien.storage.database import engine_from_settings
    from gardien.storage.migrate import upgrade

    engine = engine_from_settings(settings())
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    out().print("database is at the latest schema")


@keys_app.command("init")
def keys_init() -> None:
    """Create the keys file (mode 0600) if it does not exist."""
    path, created = init_keys(settings())
    out().print(f"{'created' if created else 'kept existing'} {path}")


@register_app.command("check")
def register_check(
    path: Annotated[Path, typer.Argument(help="The register YAML file.")],
    strict: Annotated[
        bool,
        typer.Option(
            help="Also fail on activities whose store is not built yet or cannot honour "
            "their retention trigger or action."
        ),
    ] = False,
) -> None:
    """Validate a register: every problem as file:line: field: reason, exit 2 if any."""
    from gardien.retention.service import unsupported_reason
    from gardien.retention.stores import StoreRegistry
    from gardien.runtime import domain_stores

    register = read_register(path)
    if strict:
        stores = StoreRegistry(domain_stores())
        from gardien.register.loader import read_located

        located, _ = read_located(path)
        problems = []
        for index, activity in enumerate(register.activities):
            reason = unsupported_reason(activity, stores)
            if reason:
                problems.append(str(located.problem(("activities", index, "storage"), reason)))
        if problems:
            fail(problems)
    out().print(
        f"{path}: valid ({len(register.activities)} activities, {len(register.cookies)} cookies)",
        soft_wrap=True,
    )


@register_app.command("export")
def register_export(
    format: Annotated[ExportFormat, typer.Option("--format", help="csv, json or html")] = (
        ExportFormat.csv
    ),
    lang: Annotated[Lang | None, typer.Option(help="Language of the texts.")] = None,
    path: Annotated[Path | None, typer.Option("--register", help="Register file.")] = None,
) -> None:
    """Print the Art. 30 record of processing activities."""
    from gardien.policy import art30
    from gardien.web.templating import make_environment

    register = read_register(path or settings().register_file)
    language = lang.value if lang else register.languages.default
    if format is ExportFormat.csv:
        sys.stdout.write(art30.to_csv(register, language))
    elif format is ExportFormat.json:
        sys.stdout.write(art30.to_json(register, language))
    else:
        sys.stdout.write(art30.to_html(register, language, make_environment(language)))


@policy_app.command("render")
def policy_render(
    lang: Annotated[Lang, typer.Option(help="Language.")] = Lang.en,
    format: Annotated[DocFormat, typer.Option("--format", help="html, md or json")] = (
        DocFormat.md
    ),
    path: Annotated[Path | None, typer.Option("--register", help="Register file.")] = None,
) -> None:
    """Print the policy the register produces (what /privacy shows once published)."""
    from gardien.policy.document import build_document
    from gardien.policy.render import to_markdown
    from gardien.web.templating import make_environment

    register = read_register(path or settings().register_file)
    if lang.value not in register.languages.available:
        fail(f"language {lang.value!r} is not declared in the register")
    document = build_document(register, lang.value)
    if format is DocFormat.md:
        sys.stdout.write(to_markdown(document))
    elif format is DocFormat.json:
        sys.stdout.write(json.dumps(document.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(
            make_environment(lang.value)
            .get_template("policy/document.html")
            .render(document=document, sections=document.sections, languages=[], path="/privacy")
        )


@policy_app.command("publish")
def policy_publish() -> None:
    """Record a new policy version if the register's policy changed."""
    from gardien.app import publish_policy

    with running() as state:
        before = _latest(state)
        number = publish_policy(state, "cli")
    if number == before:
        out().print(f"policy unchanged: version {number} stays in force")
    else:
        out().print(f"published policy version {number}")


def _latest(state: State) -> int | None:
    from gardien.policy import repository

    with state.sessions() as session:
        return repository.latest_number(session)


@policy_app.command("versions")
def policy_versions() -> None:
    """List the published policy versions."""
    from gardien.policy import repository

    with running() as state, state.sessions() as session:
        versions = repository.all_versions(session)
    table = new_table("version", "effective", "sha-256", "published by")
    for version in versions:
        table.add_row(
            str(version.number),
            version.effective_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            version.content_hash,
            version.published_by,
        )
    out().print(table if versions else "no version published yet")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option(help="Count what would be purged; change nothing.")
    ] = False,
) -> None:
    """Apply every activity's retention period now; one receipt per activity."""
    from gardien.retention.service import run_retention

    with running() as state:
        with progress_bar("{task.description}", "{task.completed} rows") as progress:
            tasks: dict[str, TaskID] = {}

            def advance(activity: str, rows: int) -> None:
                if activity not in tasks:
                    tasks[activity] = progress.add_task(activity, total=None)
                progress.update(tasks[activity], completed=rows)

            try:
                results = run_retention(
                    state.sessions,
                    state.register,
                    state.stores,
                    state.clock,
                    dry_run=dry_run,
                    progress=advance,
                )
            except LockBusy:
                fail("another instance is running retention now; try again later", code=1)
    table = new_table("activity", "store", "outcome", "cutoff", "rows", "ms", "note")
    for result in results:
        table.add_row(
            result.activity,
            result.store,
            result.outcome.value,
            result.cutoff.strftime("%Y-%m-%d %H:%M"),
            str(result.rows),
            str(result.duration_ms),
            result.note or "",
        )
    out().print(table)


@retention_app.command("status")
def retention_status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Per activity: the oldest stored record against the promised limit (exit 1 if overdue)."""
    from gardien.retention.service import State as RetentionState
    from gardien.retention.service import retention_status

    with running() as state, state.sessions() as session:
        rows = list(retention_status(session, state.register, state.stores, state.clock))
    if as_json:
        sys.stdout.write(
            json.dumps(
                [
                    {
                        "activity": r.activity,
                        "store": r.store,
                        "period": r.period,
                        "limit": r.limit.isoformat(),
                        "oldest": r.oldest.isoformat() if r.oldest else None,
                        "state": r.state.value,
                        "last_run": r.last_run.isoformat() if r.last_run else None,
                        "note": r.note,
                    }
                    for r in rows
                ],
                indent=2,
            )
            + "\n"
        )
    else:
        table = new_table(
            "activity", "store", "period", "oldest record", "limit", "state", "last run"
        )
        for r in rows:
            table.add_row(
                r.activity,
                r.store,
                r.period,
                r.oldest.strftime("%Y-%m-%d") if r.oldest else "-",
                r.limit.strftime("%Y-%m-%d"),
                r.state.value,
                r.last_run.strftime("%Y-%m-%d %H:%M") if r.last_run else "never",
            )
        out().print(table)
    if any(r.state is RetentionState.overdue for r in rows):
        raise typer.Exit(1)


class RoleChoice(StrEnum):
    admin = "admin"
    dpo = "dpo"
    agent = "agent"
    auditor = "auditor"


@admin_app.command("create-user")
def admin_create_user(
    email: Annotated[str, typer.Argument(help="The person's e-mail address (their sign-in).")],
    role: Annotated[RoleChoice, typer.Option(help="admin, dpo, agent or auditor")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an admin account; its owner enrols a second factor at first sign-in."""
    from gardien.errors import GardienError
    from gardien.security import audit, service
    from gardien.security.passwords import WeakPassword
    from gardien.storage.database import unit_of_work

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with running() as state:
        try:
            with unit_of_work(state.sessions) as session:
                now = state.clock.now()
                user = service.create_user(session, email, role.value, password, now)
                audit.record(
                    session,
                    audit.Actor.system("cli"),
                    "user.created",
                    now,
                    target_type="admin_user",
                    target_id=str(user.id),
                    reason=f"role={role.value}",
                )
        except (GardienError, WeakPassword) as exc:
            fail(exc.message if isinstance(exc, GardienError) else str(exc))
    out().print(f"created account {user.id} with role {role.value}; second factor at first sign-in")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit chain; exit 1 naming the first broken entry."""
    from gardien.security import audit

    with running() as state, state.readers() as session:
        broken = audit.verify_chain(session)
        seq, head = audit.head(session)
    if broken is not None:
        fail(f"audit chain broken at {broken}", code=1)
    out().print(f"audit chain intact: {seq} entries, head {head}")


@consent_app.command("verify")
def consent_verify() -> None:
    """Walk the consent records' chain; exit 1 naming the first broken record."""
    from gardien.consent.records import verify_chain

    with running() as state, state.readers() as session:
        broken = verify_chain(session)
        count, head = _consent_head(session)
    if broken is not None:
        fail(f"consent chain broken at {broken}", code=1)
    out().print(f"consent chain intact: {count} records, head {head}")


def _consent_head(session: Any) -> tuple[int, str]:
    from sqlalchemy import select

    from gardien.consent.models import ConsentRecord
    from gardien.storage.chain import GENESIS

    row = session.execute(
        select(ConsentRecord.seq, ConsentRecord.hash).order_by(ConsentRecord.seq.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _day(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    except ValueError:
        fail(f"{option}: expected a date as YYYY-MM-DD")


@consent_app.command("export")
def consent_export(
    since: Annotated[
        str | None, typer.Option("--from", help="first day (YYYY-MM-DD), inclusive")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="last day (YYYY-MM-DD), inclusive")
    ] = None,
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    revision: Annotated[int | None, typer.Option(help="only this banner revision")] = None,
    category: Annotated[str | None, typer.Option(help="only records naming it")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--out", help="file to write (default: stdout)")
    ] = None,
) -> None:
    """Export consent records (CSV or JSON), filtered by date range, action, revision,
    category. The export is recorded in the audit trail."""
    from gardien.consent.records import ACTIONS
    from gardien.consent.service import Filters, export, records
    from gardien.security import audit
    from gardien.storage.database import unit_of_work

    if fmt not in ("csv", "json"):
        fail("--format: csv or json")
    if action is not None and action not in ACTIONS:
        fail(f"--action: one of {', '.join(ACTIONS)}")
    start = _day(since, "--from")
    end = _day(until, "--to")
    filters = Filters(
        start=start,
        end=end + dt.timedelta(days=1) if end else None,
        action=action,
        revision=revision,
        category=category,
    )
    with running() as state:
        with state.readers() as session:
            text = export(records(session, filters), fmt)
        rows = text.count("\n") - 1 if fmt == "csv" else len(json.loads(text))
        with unit_of_work(state.sessions) as session:
            audit.record(
                session,
                audit.Actor.system("cli"),
                "consent.exported",
                state.clock.now(),
                target_type="consent_record",
                reason=f"{rows} records, {fmt}",
            )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        os.chmod(output, 0o600)  # records carry consent ids: not for other users
        err().print(f"{rows} records written to {output}")


@keys_app.command("rotate")
def keys_rotate(
    master: Annotated[bool, typer.Option(help="Rotate the master key (re-wrap data keys).")] = True,
    data: Annotated[bool, typer.Option(help="New data key; re-encrypt rows in chunks.")] = True,
    index: Annotated[bool, typer.Option(help="New blind-index key; re-index rows.")] = True,
) -> None:
    """Rotate keys while Gardien keeps running; retired keys are kept for old backups."""
    from gardien.models import metadata
    from gardien.security import audit
    from gardien.security.rotation import reencrypt, reindex
    from gardien.storage.database import unit_of_work

    with running() as state:
        store = state.keys
        done: list[str] = []
        with progress_bar("{task.description}", "{task.completed} rows") as progress:
            task = progress.add_task("rotating", total=None)

            def advance(table: str, rows: int) -> None:
                progress.update(task, description=table, completed=rows)

            if master:
                done.append(f"master key {store.rotate_master()}")
            # Running instances pick a new key up within the ring's max_age; a second pass
            # after that catches rows they wrote with the previous key in the meantime.
            settle = store.ring.max_age + 2

            def twice(work: Callable[[], int], since: float) -> int:
                rows = work()
                time.sleep(max(0.0, since + settle - time.monotonic()))
                return rows + work()

            if data:
                key_id = store.add_key("data")
                rows = twice(
                    lambda: reencrypt(state.sessions, store.ring, metadata, progress=advance),
                    time.monotonic(),
                )
                done.append(f"data key {key_id} ({rows} rows re-encrypted)")
            if index:
                key_id = store.add_key("index")
                rows = twice(
                    lambda: reindex(state.sessions, store.ring, metadata, progress=advance),
                    time.monotonic(),
                )
                store.finish_reindex()
                done.append(f"index key {key_id} ({rows} rows re-indexed)")
        from gardien.backup.archive import BackupError
        from gardien.backup.service import needed_masters

        try:
            needed = needed_masters(state.settings)
        except BackupError as exc:  # keep every retired key rather than guess
            done.append(f"retired master keys kept: {exc}")
        else:
            for key_id in store.prune_masters(needed):
                done.append(f"retired master key {key_id} forgotten (no retained backup needs it)")
        with unit_of_work(state.sessions) as session:
            audit.record(
                session,
                audit.Actor.system("cli"),
                "keys.rotated",
                state.clock.now(),
                reason="; ".join(done),
            )
    for line in done:
        out().print(line)


@backup_app.command("create")
def backup_create(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Directory to write to (DATA_DIR/backups)."),
    ] = None,
) -> None:
    """Take an encrypted, consistent snapshot of the database while Gardien keeps running
    (analytics daily salts left out); print where it went as JSON."""
    from gardien.backup.archive import BackupError
    from gardien.backup.service import create

    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        fail(f"--out: {out_dir} is not a directory")
    with running() as state:
        try:
            created = create(state, out_dir)
        except BackupError as exc:
            fail(str(exc))
    document = {
        "backup": created.header.id,
        "path": str(created.path.resolve()),
        "size": created.size,
        "sha256": created.sha256,
        "master_key": created.header.master_id,
        "journal_seq": created.header.journal_seq,
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@backup_app.command("restore")
def backup_restore(
    backup_file: Annotated[Path, typer.Argument(metavar="FILE", help="A gardien-*.gbk file.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the database's content is replaced.")
    ] = False,
) -> None:
    """Replace the database with a backup (stop Gardien first), then re-apply every erasure
    and restriction made since it was taken and run retention; print what was re-applied."""
    from gardien.backup.archive import BackupError, read_header
    from gardien.backup.service import restore_database
    from gardien.runtime import build_state, start
    from gardien.security.keys import read_keys
    from gardien.storage.migrate import upgrade

    if not yes:
        fail("a restore replaces the database's content: add --yes to confirm")
    if not backup_file.is_file():
        fail(f"{backup_file}: no such backup file")
    config = settings()
    try:
        header = read_header(backup_file)
        keys = read_keys(config)
    except (BackupError, KeysError) as exc:
        fail(str(exc))
    if header.master_id not in keys.masters:
        fail(
            f"{backup_file}: needs master key {header.master_id}, which the keys file does not "
            "hold (restore the keys file that was in use when the backup was taken)"
        )
    state = build_state(config, register=read_register(config.register_file))
    try:
        try:
            restore_database(config, state, backup_file)
        except BackupError as exc:
            fail(str(exc))
        upgrade(state.engine)  # a backup of an older version: bring its schema up to date
        try:
            start(state)  # opens the keys, then replays the journal and runs retention
        except KeysError as exc:
            fail(str(exc))
    finally:
        state.engine.dispose()
    document: dict[str, Any] = {"backup": header.id, "taken_at": header.created_at.isoformat()}
    document.update(state.caches.get("restore_report", {}))
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _register_country(path: Path | None) -> str:
    """The configured register's ``rights.holidays_country`` (``--register``, else
    ``GARDIEN_REGISTER``, else the default file if it exists); RO without a register."""
    from gardien.rights.deadlines import DEFAULT_COUNTRY

    register_file = path or settings().register_file
    if path is None and "GARDIEN_REGISTER" not in os.environ and not register_file.exists():
        return DEFAULT_COUNTRY
    return read_register(register_file).rights.holidays_country


@rights_app.command("due-date")
def rights_due_date(
    received: Annotated[
        str, typer.Argument(metavar="YYYY-MM-DD", help="The day the request was received.")
    ],
    country: Annotated[
        str | None,
        typer.Option(
            help="Whose public holidays are not working days (ISO 3166-1 alpha-2); default: "
            "the register's rights.holidays_country, else RO."
        ),
    ] = None,
    extended: Annotated[
        bool,
        typer.Option(
            "--extended", help="The deadline extended by two further months (Art. 12(3))."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    path: Annotated[Path | None, typer.Option("--register", help="Register file.")] = None,
) -> None:
    """Print the legal due date of a request received that day (GDPR Art. 12(3) counted per
    Reg. 1182/71): the date first, then how it was reached."""
    import re

    from gardien.rights.deadlines import EXTENDED_MONTHS, ONE_MONTH, deadline

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", received):
        fail(f"{received}: expected a date as YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(received)
    except ValueError as exc:
        fail(f"{received}: not a calendar date ({exc})")
    code = country.upper() if country else _register_country(path)
    try:
        result = deadline(day, code, EXTENDED_MONTHS if extended else ONE_MONTH)
    except ValueError as exc:
        fail(str(exc))

    def weekday(value: dt.date, reason: str | None = None) -> str:
        name = _WEEKDAYS[value.weekday()]
        return name if reason in (None, name) else f"{name}, {reason}"

    if as_json:
        document = {
            "received": result.received.isoformat(),
            "country": result.country,
            "months": result.months,
            "nominal": result.nominal.isoformat(),
            "due": result.due.isoformat(),
            "skipped": [
                {"date": s.day.isoformat(), "weekday": weekday(s.day), "reason": s.reason}
                for s in result.skipped
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    span = {1: "one month", 3: "three months"}.get(result.months, f"{result.months} months")
    nominal = result.nominal
    why = f"{span} after {result.received.isoformat()} ends {weekday(nominal)} {nominal}"
    if nominal.day != result.received.day:
        why += f" (there is no {result.received.day} {nominal:%B}: the month's last day)"
    if result.skipped:
        passed = ", ".join(f"{s.day} ({weekday(s.day, s.reason)})" for s in result.skipped)
        why += (
            f"; {passed}: not working days in {result.country}, so the next working day, "
            f"{weekday(result.due)} {result.due}"
        )
    else:
        why += f", a working day in {result.country}"
    sys.stdout.write(f"{result.due.isoformat()}\n{why}.\n")


# -- rights: fulfilling a verified request -------------------------------------------------------


def _cli_operator() -> Actor:
    """The actor of the timeline and audit entries written by ``gardien rights``."""
    from gardien.security.audit import Actor

    return Actor("cli", "operator")


EmailOption = Annotated[str | None, typer.Option("--email", help="The person's e-mail address.")]
PhoneOption = Annotated[
    str | None,
    typer.Option(
        "--phone",
        help="The person's phone number (E.164, or national in the operator's country).",
    ),
]
ConsentIdOption = Annotated[
    str | None, typer.Option("--consent-id", help="The consent id shown in the cookie panel.")
]
VisitorIdOption = Annotated[
    str | None, typer.Option("--visitor-id", help="An analytics visitor id or user id.")
]
IpOption = Annotated[
    str | None, typer.Option("--ip", help="An IP address the person used (with --since/--until).")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", metavar="YYYY-MM-DD", help="Start of the IP's period.")
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", metavar="YYYY-MM-DD", help="End of the IP's period (inclusive)."),
]


def _cli_subject(
    email: str | None,
    phone: str | None,
    consent_id: str | None,
    visitor_id: str | None,
    ip: str | None,
    since: str | None,
    until: str | None,
) -> SubjectIdentity:
    """The person's identity from the command line, validated as the forms validate it and
    before the database is touched: every problem is one line and exit 2, with nothing
    written. The value itself is never echoed."""
    import ipaddress

    import phonenumbers
    from email_validator import EmailNotValidError, validate_email

    from gardien.storage.subjects import SubjectIdentity

    register = read_register(settings().register_file)
    problems: list[str] = []
    if email is not None:
        try:
            email = validate_email(email.strip(), check_deliverability=False).normalized
        except EmailNotValidError:
            problems.append("--email: not a valid e-mail address")
    if phone is not None:
        region = register.operator.addresses[0].country
        try:
            number = phonenumbers.parse(phone.strip(), region)
            if not phonenumbers.is_valid_number(number):
                raise ValueError
            phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except (phonenumbers.NumberParseException, ValueError):
            problems.append(f"--phone: not a valid phone number (in {region} or with +country)")
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            problems.append("--ip: not an IP address")
    period = None
    if since is not None or until is not None:
        start = _day(since, "--since") if since else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        end = _day(until, "--until") if until else dt.datetime.now(dt.UTC)
        assert start is not None
        assert end is not None
        end = end + dt.timedelta(days=1)
        if end <= start:
            problems.append("--until: must not be before --since")
        period = (start, end)
    for name, value in (("--consent-id", consent_id), ("--visitor-id", visitor_id)):
        if value is not None and not value.strip():
            problems.append(f"{name}: empty")
    if problems:
        fail(problems)
    if not any((email, phone, consent_id, visitor_id, ip)):
        fail("give at least one identifier: --email, --phone, --consent-id, --visitor-id or --ip")
    return SubjectIdentity(
        email=email,
        phone=phone,
        consent_id=consent_id.strip() if consent_id else None,
        visitor_id=visitor_id.strip() if visitor_id else None,
        ip_address=ip,
        period=period,
    )


def _open_cli_case(
    state: State, subject: SubjectIdentity, rights: list[str], language: str | None = None
) -> tuple[Desk, RightsCase]:
    """Open the case in a transaction of its own, so it stays visible whatever follows."""
    from gardien.rights.service import Desk, open_case
    from gardien.storage.database import unit_of_work

    desk = Desk(state.register, state.providers, state.settings.base_url)
    with unit_of_work(state.sessions) as session:
        case = open_case(
            session,
            desk,
            subject,
            rights,
            channel="cli",
            now=state.clock.now(),
            actor=_cli_operator(),
            language=language,
        )
    return desk, case


@rights_app.command("export")
def rights_export(
    out_file: Annotated[
        Path, typer.Option("--out", metavar="FILE.zip", help="Where to write the package.")
    ],
    email: EmailOption = None,
    phone: PhoneOption = None,
    consent_id: ConsentIdOption = None,
    visitor_id: VisitorIdOption = None,
    ip: IpOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    lang: Annotated[Lang | None, typer.Option(help="The person's language.")] = None,
    portability: Annotated[
        bool,
        typer.Option(
            "--portability/--no-portability",
            help="Add the Art. 20 portability files (consent- or contract-based data).",
        ),
    ] = True,
) -> None:
    """Answer a verified access request: open a case, write the package (HTML, JSON, CSV,
    the Art. 15 information), print the case reference and the package path as JSON."""
    from gardien.rights.models import RightsCase
    from gardien.rights.service import add_event, close_case, export_package, subject_of
    from gardien.storage.database import unit_of_work

    if not out_file.parent.is_dir():
        fail(f"--out: the directory {out_file.parent} does not exist")
    subject = _cli_subject(email, phone, consent_id, visitor_id, ip, since, until)
    rights = ["access", "portability"] if portability else ["access"]
    with running() as state:
        desk, case = _open_cli_case(state, subject, rights, lang.value if lang else None)
        operator = _cli_operator()
        with unit_of_work(state.sessions) as session:
            case = session.get_one(RightsCase, case.id)
            now = state.clock.now()
            package = export_package(session, desk, case, subject_of(case), now=now, actor=operator)
            if not package.failures:
                out_file.write_bytes(package.content)
                add_event(session, case, now, operator, "package_written")
                close_case(session, case, now, operator, "answered")
        written = not package.failures
        document = {
            "case": case.reference,
            "status": case.status,
            "due_date": case.due_at.isoformat(),
            "package": str(out_file.resolve()) if written else None,
            "sha256": package.sha256 if written else None,
            "found": {name: found.total for name, found in package.found.items()},
            "failed": [f.store for f in package.failures],
        }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    if not written:
        raise typer.Exit(1)


@rights_app.command("erase")
def rights_erase(
    email: EmailOption = None,
    phone: PhoneOption = None,
    consent_id: ConsentIdOption = None,
    visitor_id: VisitorIdOption = None,
    ip: IpOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: erasure cannot be undone.")] = False,
) -> None:
    """Answer a verified erasure request: open a case, erase the person from every store
    (each all or nothing), apply the register's exceptions, print the receipt as JSON."""
    from gardien.rights.models import RightsCase
    from gardien.rights.service import erase, subject_of
    from gardien.storage.database import unit_of_work

    if not yes:
        fail("erasure cannot be undone: add --yes to confirm")
    subject = _cli_subject(email, phone, consent_id, visitor_id, ip, since, until)
    with running() as state:
        desk, case = _open_cli_case(state, subject, ["erasure"])
        with unit_of_work(state.sessions) as session:
            case = session.get_one(RightsCase, case.id)
            receipt = erase(
                session, desk, case, subject_of(case), now=state.clock.now(), actor=_cli_operator()
            )
    sys.stdout.write(json.dumps({"case": case.reference, "receipt": receipt}, indent=2) + "\n")
    if not receipt["complete"]:
        raise typer.Exit(1)


@analytics_app.command("report")
def analytics_report(
    site: Annotated[str | None, typer.Option("--site", help="a site id of the register")] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="first day (YYYY-MM-DD), inclusive")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="last day (YYYY-MM-DD), inclusive")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Print a site's audience report for a range of days (at most 366), after bringing the
    daily rollups up to date. The export is recorded in the audit trail."""
    from gardien.analytics.period import check_period
    from gardien.analytics.reports import build_report, report_as_csv, report_as_dict
    from gardien.errors import BadRequest
    from gardien.security import audit
    from gardien.storage.database import unit_of_work

    if fmt not in ("json", "csv"):
        fail("--format: json or csv")
    register = read_register(settings().register_file)
    try:
        period = check_period(register, site, since, until)
    except BadRequest as exc:  # "from: ..." names the option without its dashes
        fail(
            f"--{exc.message}"
            if exc.message.split(":")[0] in ("site", "from", "to")
            else exc.message
        )
    with running(register) as state:
        _refresh_rollups(state)
        with state.readers() as session:
            report = build_report(session, period.site.id, period.start, period.end)
        with unit_of_work(state.sessions) as session:
            audit.record(
                session,
                audit.Actor.system("cli"),
                "analytics.exported",
                state.clock.now(),
                target_type="analytics_report",
                target_id=str(period.site.id),
                reason=f"{period.start}..{period.end}, {fmt}",
            )
    if fmt == "csv":
        sys.stdout.write(report_as_csv(report))
    else:
        sys.stdout.write(json.dumps(report_as_dict(report), indent=2, ensure_ascii=False) + "\n")


def _refresh_rollups(state: State) -> None:
    """Bring the rollups up to date, with a progress bar over the days recomputed. When another
    instance (a server's schedule) is refreshing them, wait for it: it does the same work."""
    from gardien.analytics.reports import refresh_rollups

    deadline = time.monotonic() + 60
    with progress_bar("rollups", "{task.completed}/{task.total} days") as progress:
        task = progress.add_task("rollups", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        while True:
            try:
                refresh_rollups(state.sessions, state.register, state.clock, progress=advance)
                return
            except LockBusy:
                if time.monotonic() > deadline:
                    fail(
                        "another instance has been refreshing the rollups for a minute; "
                        "try again later",
                        code=1,
                    )
                time.sleep(0.5)


# -- rights: the evidence pack ---------------------------------------------------------------


@rights_app.command("evidence")
def rights_evidence(
    out_file: Annotated[
        Path, typer.Option("--out", metavar="FILE.html", help="Where to write the pack.")
    ],
    case_ref: Annotated[
        str | None, typer.Option("--case", metavar="REF", help="A case's reference.")
    ] = None,
    on: Annotated[
        str | None,
        typer.Option("--date", metavar="YYYY-MM-DD", help="The whole system on that day."),
    ] = None,
    lang: Annotated[Lang | None, typer.Option(help="The pack's language.")] = None,
) -> None:
    """Write the evidence pack of a case (``--case``) or of the system on a day (``--date``)
    as printable HTML; the export is written to the audit trail."""
    from sqlalchemy import select

    from gardien.rights import evidence
    from gardien.rights.models import RightsCase
    from gardien.security.audit import record
    from gardien.storage.database import unit_of_work

    if (case_ref is None) == (on is None):
        fail("give exactly one of --case REF or --date YYYY-MM-DD")
    if not out_file.parent.is_dir():
        fail(f"--out: the directory {out_file.parent} does not exist")
    day = None
    if on is not None:
        try:
            day = dt.date.fromisoformat(on)
        except ValueError:
            fail(f"--date: {on[:20]!r} is not a date (YYYY-MM-DD)")
    with running() as state, unit_of_work(state.sessions) as session:
        now = state.clock.now()
        language = lang.value if lang else state.register.languages.default
        if day is not None:
            text = evidence.system_pack(
                session, day, now=now, language=language, time_zone=state.register.rights.time_zone
            )
            target = ("system", day.isoformat())
        else:
            case = session.scalar(
                select(RightsCase).where(RightsCase.reference == (case_ref or "")[:24])
            )
            if case is None:
                fail("--case: no such case (it may have been purged)")
            text = evidence.case_pack(
                session,
                case,
                now=now,
                language=language,
                time_zone=state.register.rights.time_zone,
            )
            target = ("rights_case", case.reference)
        record(
            session,
            _cli_operator(),
            "rights.evidence_exported",
            now,
            target_type=target[0],
            target_id=target[1],
        )
        out_file.write_text(text, encoding="utf-8")
    sys.stdout.write(json.dumps({"pack": str(out_file.resolve()), "of": target[1]}) + "\n")
