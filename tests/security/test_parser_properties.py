"""Property tests of the parsers a visitor's bytes reach without an API schema in front: the
consent cookie, the contact form's fields, consent records. Whatever arrives: a value, a
refusal naming the field, or ``None``; never an unexpected exception (a 500), never the
value sent quoted in a refusal. (The tracking parameters and the register loader have their
own: ``tests/analytics/test_fuzz.py``, ``tests/register/test_properties.py``.)"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import hypothesis
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from gardien.consent import cookie
from gardien.consent import records as consent_records
from gardien.consent.revisions import Current
from gardien.errors import GardienError
from gardien.forms import validation
from gardien.register.loader import load_register

SEED = load_register(
    Path(__file__).resolve().parents[2] / "examples" / "seed-site" / "register.yaml"
)
CONTACT = SEED.forms[0]
ECHO_MINIMUM = 8
NOW = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)

digits = st.one_of(
    st.integers(0, 10**13).map(str),
    st.sampled_from(["²", "١٢", "0" * 5000, "9" * 12, "", "-1", "1e3", "１"]),
)
cookie_values = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda cid, rev, when, choices: f"1:{cid}:{rev}:{when}:{choices}",
        st.sampled_from(["0" * 32, "f" * 32, "F" * 32, "0" * 31, ""]),
        digits,
        digits,
        st.text(alphabet="ab_=&01", max_size=30),
    ),
)


@hypothesis.settings(deadline=None, max_examples=200)
@given(cookie_values)
@example("1:" + "0" * 32 + ":²:1:")
@example("1:" + "0" * 32 + ":1:999999999999:")
@example("1:" + "0" * 32 + ":" + "9" * 900 + ":1:")
def test_a_consent_cookie_is_a_decision_or_nothing(value: str) -> None:
    decision = cookie.parse(value)
    if decision is not None:
        assert len(decision.consent_id) == 32 and decision.revision >= 0
        cookie.current_decision(value, decision.revision, "P6M", NOW)


field_values = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["²", "+40 21 123 4567", "a@b", "x" * 6000, "\u0000", "\ud800", "RO", "ro"]),
    st.none(),
    st.booleans(),
    st.integers(),
    st.lists(st.text(max_size=5), max_size=3),
)
names = st.one_of(st.sampled_from([f.name for f in CONTACT.fields]), st.text(max_size=70))


@hypothesis.settings(deadline=None, max_examples=150)
@given(st.dictionaries(names, field_values, max_size=12))
def test_form_fields_are_values_or_reasons(raw: dict[str, object]) -> None:
    checked = validation.check(CONTACT, raw)
    for error in checked.errors:
        text = error.text("en")
        for value in raw.values():
            if isinstance(value, str) and len(value.strip()) >= ECHO_MINIMUM:
                assert value not in text, "a refusal quotes the value sent"
    known = {f.name for f in CONTACT.fields}
    assert set(checked.values) <= known


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
record_keys = st.sampled_from(sorted(consent_records.RecordIn.model_fields))


@hypothesis.settings(deadline=None, max_examples=150)
@given(st.dictionaries(st.one_of(record_keys, st.text(max_size=12)), json_values, max_size=14))
def test_a_consent_record_is_parsed_or_refused_by_field(body: dict[str, object]) -> None:
    try:
        record = consent_records.RecordIn.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            assert "input" not in error
        return
    assert consent_records.clean_path(record.page).startswith("/")
    try:
        consent_records.check(record, _current(), ["en", "fr", "ro"])
    except GardienError as refusal:
        assert 400 <= refusal.status < 500


def _current() -> Current:
    return Current(
        number=1,
        content_hash="0" * 64,
        optional=("audience_measurement",),
        required=("strictly_necessary",),
        services={},
        changes={},
        document={},
    )
