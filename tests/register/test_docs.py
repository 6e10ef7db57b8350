"""docs/register.md documents every key and value the register schema accepts.

The doc is written by hand for DPOs and web teams; these tests make a schema change that the
doc does not follow fail, instead of letting the doc silently fall behind.
"""

from __future__ import annotations

import inspect
from enum import Enum

import pytest
from pydantic import BaseModel

from gardien.register import schema
from tests.conftest import ROOT

REGISTER_DOC = ROOT / "docs" / "register.md"


def _defined_in_schema(kind: type) -> list[type]:
    return [
        value
        for _, value in inspect.getmembers(schema, inspect.isclass)
        if issubclass(value, kind) and value is not kind and value.__module__ == schema.__name__
    ]


MODELS: list[type[BaseModel]] = [
    model
    for model in _defined_in_schema(BaseModel)
    if issubclass(model, BaseModel) and model.model_fields
]
ENUMS: list[type[Enum]] = [enum for enum in _defined_in_schema(Enum) if issubclass(enum, Enum)]


def _missing(names: list[str]) -> list[str]:
    text = REGISTER_DOC.read_text(encoding="utf-8")
    return [name for name in names if f"`{name}`" not in text]


def test_the_schema_has_models_and_enums_to_check() -> None:
    assert {m.__name__ for m in MODELS} >= {"Register", "Activity", "Cookie", "RightsSection"}
    assert {e.__name__ for e in ENUMS} >= {"LegalBasis", "RetentionTrigger", "Right"}


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    missing = _missing(list(model.model_fields))
    assert not missing, f"docs/register.md does not mention {model.__name__} fields {missing}"


@pytest.mark.parametrize("enum", ENUMS, ids=lambda enum: enum.__name__)
def test_every_allowed_value_is_documented(enum: type[Enum]) -> None:
    missing = _missing([str(member.value) for member in enum])
    assert not missing, f"docs/register.md does not mention {enum.__name__} values {missing}"
