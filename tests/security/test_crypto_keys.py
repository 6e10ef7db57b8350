"""Encryption at rest: ciphertext bound to its column and key, blind indexes, rotation while
data stays readable, and a wrong or missing keys file stopping Gardien instead of corrupting."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import LargeBinary, select, type_coerce

from gardien.deps import State
from gardien.models import metadata
from gardien.runtime import start
from gardien.security import crypto, service
from gardien.security.crypto import DecryptionError, KeyRing
from gardien.security.keys import KeysError, keys_path
from gardien.security.models import AdminUser, EncryptionKey
from gardien.security.rotation import reencrypt, reindex

PASSWORD = "correct horse battery staple"


def add_users(state: State, count: int) -> None:
    with state.sessions.begin() as session:
        for i in range(count):
            service.create_user(
                session, f"Person{i}@Example.org", "agent", PASSWORD, state.clock.now()
            )


def raw_emails(state: State) -> list[bytes]:
    with state.sessions() as session:
        return [
            bytes(b) for b in session.scalars(select(type_coerce(AdminUser.email, LargeBinary)))
        ]


def test_values_are_ciphertext_bound_to_their_column(state: State) -> None:
    add_users(state, 1)
    [blob] = raw_emails(state)
    assert b"Person0" not in blob and blob[:1] == crypto.FORMAT
    ring = crypto.ring()
    assert ring.decrypt(blob, "admin_user.email") == "Person0@Example.org"
    with pytest.raises(DecryptionError):
        ring.decrypt(blob, "admin_user.totp_secret")  # same key, other column: refused
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        ring.decrypt(tampered, "admin_user.email")


def test_blind_index_finds_normalised_values_without_storing_them(state: State) -> None:
    add_users(state, 3)
    with state.sessions() as session:
        found = service.find_user_by_email(session, "  person1@EXAMPLE.org ")
        assert found is not None and found.email == "Person1@Example.org"
        indexes = session.scalars(select(AdminUser.email_index)).all()
    assert all("person" not in i.lower() for i in indexes)
    assert len(set(indexes)) == 3


def test_rotating_every_key_keeps_data_readable_and_searchable(state: State) -> None:
    add_users(state, 7)
    store = state.keys
    old_master = json.loads(keys_path(state.settings).read_text())["active_master"]
    old_data, old_index = store.ring.active_data, store.ring.active_index
    new_master = store.rotate_master()
    assert new_master != old_master
    keys_file = json.loads(keys_path(state.settings).read_text())
    assert old_master in keys_file["retired_masters"] and old_master in keys_file["masters"]
    assert os.stat(keys_path(state.settings)).st_mode & 0o777 == 0o600

    new_data = store.add_key("data")
    assert reencrypt(state.sessions, store.ring, metadata, chunk=3) >= 7
    assert {KeyRing.key_id_of(b) for b in raw_emails(state)} == {new_data}
    assert reencrypt(state.sessions, store.ring, metadata, chunk=3) == 0  # idempotent

    new_index = store.add_key("index")
    assert store.ring.live_index == [new_index, old_index]
    with state.sessions() as session:  # mid-rotation: rows still carry the old index
        assert service.find_user_by_email(session, "person3@example.org") is not None
    reindex(state.sessions, store.ring, metadata, chunk=3)
    store.finish_reindex()
    assert store.ring.live_index == [new_index]
    with state.sessions() as session:
        user = service.find_user_by_email(session, "person3@example.org")
        assert user is not None and user.email == "Person3@Example.org"
        states = dict(session.execute(select(EncryptionKey.id, EncryptionKey.state)).tuples().all())
    assert states[old_data or ""] == "retired" and states[old_index or ""] == "retired"
    assert set(states.values()) == {"active", "retired"}


def test_a_wrong_keys_file_stops_gardien(state: State) -> None:
    path = keys_path(state.settings)
    path.rename(path.with_name("keys.good"))
    with pytest.raises(
        KeysError, match="keys file is missing but this database holds encrypted data"
    ):
        start(state)
    assert not path.exists()  # nothing was created in its place
    from gardien.security.keys import init_keys

    init_keys(state.settings)  # a fresh, unrelated keys file
    with pytest.raises(KeysError, match="this keys file does not belong to this database"):
        start(state)


def test_a_keys_file_readable_by_others_is_refused(state: State) -> None:
    os.chmod(keys_path(state.settings), 0o644)
    with pytest.raises(KeysError, match="readable by others"):
        start(state)


def test_a_running_instance_moves_to_keys_another_one_rotated(state: State) -> None:
    from gardien.security.keys import KeyStore

    other = KeyStore(state.settings, state.sessions, state.clock)  # a second instance
    other.load()
    new_data = other.add_key("data")
    mine = state.keys.ring
    assert mine.active_data != new_data  # not yet: this instance read the keys earlier
    mine.max_age = 0.0
    blob = mine.encrypt("someone@example.org", "admin_user.email")
    assert KeyRing.key_id_of(blob) == new_data
    assert other.ring.decrypt(blob, "admin_user.email") == "someone@example.org"
