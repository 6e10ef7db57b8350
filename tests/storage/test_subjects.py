"""The provider protocol's coverage test: every table holding personal data has a provider."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from gardien.models import metadata
from gardien.runtime import domain_providers
from gardien.storage.base import PERSONAL_DATA
from gardien.storage.subjects import ProviderRegistry, SubjectIdentity, SubjectProvider
from tests.retention.store import SampleStore, test_metadata


def test_every_personal_data_table_of_gardien_has_a_provider() -> None:
    registry = ProviderRegistry(domain_providers())
    assert registry.uncovered_tables(metadata) == []


def test_a_personal_table_without_provider_is_reported() -> None:
    extra = MetaData()
    Table(
        "orphan",
        extra,
        Column("id", Integer, primary_key=True),
        Column("email", String(50)),
        info={PERSONAL_DATA: True},
    )
    Table("harmless", extra, Column("id", Integer, primary_key=True))
    registry = ProviderRegistry(domain_providers())
    assert registry.uncovered_tables(extra) == ["orphan"]
    assert registry.uncovered_tables(test_metadata) == ["sample_record"]
    registry.register(SampleStore())
    assert registry.uncovered_tables(test_metadata) == []


def test_sample_store_implements_the_protocol() -> None:
    assert isinstance(SampleStore(), SubjectProvider)
    with pytest.raises(ValueError, match="registered twice"):
        ProviderRegistry([SampleStore(), SampleStore()])


def test_identity_needs_an_identifier_and_hides_it() -> None:
    with pytest.raises(ValueError, match="at least one identifier"):
        SubjectIdentity()
    identity = SubjectIdentity(email="alice@example.org")
    assert "alice" not in repr(identity)
    assert "email" in repr(identity)
