"""The coverage guard of restriction and objection: a provider may not ignore a right it must
support, and a domain may not ignore a restriction.

* Every registered provider implements ``restrict`` and ``object`` itself (not the protocol's
  stub); where one does nothing for a person it holds data about, its docstring says why.
* Every register activity based on legitimate interests (objection applies, Art. 21(1)) has a
  provider answering for it, or is listed here with the reason it has none.
* Every provider whose restriction changes behaviour has processing points in its domain
  (``storage.restriction.processing_point``), and every processing point consults a
  restriction check (``is_restricted`` or the analytics block list).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from gardien.deps import State
from gardien.register.schema import LegalBasis
from gardien.storage.restriction import PROCESSING_POINTS
from gardien.storage.subjects import SubjectProvider
from tests.rights.conftest import Seeded

NO_PROVIDER = {
    "audit_trail": "entries name admin actors by id and cases by reference, never a visitor; "
    "an objection is weighed by the DPO against the proof the trail is (Art. 5(2))",
    "backups": "encrypted copies kept only to recover from a loss, never otherwise processed; "
    "nothing can be stopped for one person inside an archive, so the DPO weighs it",
}
CHECKS = ("is_restricted(", "blocked(", "withheld(")
"""The restriction checks: the shared record, the analytics block list, a stored submission."""


def _resolve(dotted: str) -> Callable[..., Any]:
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        target: Any = module
        for name in parts[cut:]:
            target = getattr(target, name)
        return target  # type: ignore[no-any-return]
    raise AssertionError(f"cannot resolve {dotted}")


def test_every_provider_implements_restrict_and_object_or_says_why_not(seeded: Seeded) -> None:
    state: State = seeded.state
    for provider in state.providers.providers:
        for method in ("restrict", "object"):
            implementation = getattr(type(provider), method)
            assert implementation is not getattr(SubjectProvider, method), (provider, method)
    with state.sessions() as session, session.begin():
        for provider in state.providers.providers:
            holds = provider.find(session, seeded.subject).total
            restricted = provider.restrict(session, seeded.subject, True)
            if holds and not restricted:
                doc = inspect.getdoc(type(provider).restrict) or ""
                assert len(doc) > 40, f"{provider.name}.restrict ignores a restriction silently"
        session.rollback()


def test_every_activity_open_to_objection_has_a_provider_or_a_reason(state: State) -> None:
    names = {p.name: p for p in state.providers.providers}
    objectable = [
        a.id
        for a in state.register.activities
        if a.legal_basis.basis in (LegalBasis.legitimate_interests, LegalBasis.public_task)
    ]
    assert objectable
    for activity in objectable:
        if activity in NO_PROVIDER:
            assert activity not in names, f"{activity} has a provider now: drop it from the list"
            continue
        assert activity in names, f"objection to {activity} has no provider to stop it"
        doc = inspect.getdoc(type(names[activity]).object) or ""
        assert doc, f"{activity}: object() must say what an upheld objection does"


def test_every_restricting_domain_has_processing_points_that_consult_the_check(
    seeded: Seeded,
) -> None:
    state = seeded.state
    assert PROCESSING_POINTS, "no processing point registered"
    for name, dotted in PROCESSING_POINTS.items():
        source = inspect.getsource(_resolve(dotted))
        assert any(check in source for check in CHECKS), f"{name} ({dotted}) ignores restrictions"
    domains = {dotted.split(".")[1] for dotted in PROCESSING_POINTS.values()}
    with state.sessions() as session, session.begin():
        for provider in state.providers.providers:
            if provider.restrict(session, seeded.subject, True):
                domain = type(provider).__module__.split(".")[1]
                assert domain in domains, f"{provider.name} restricts but no point checks it"
        session.rollback()
    assert {"forms.outbox", "forms.inbox_export", "analytics.tracking"} <= set(PROCESSING_POINTS)
