"""Schemathesis against Gardien's own ``/openapi.json``: every public and admin operation gets
schema-shaped and malformed input, the admin ones through a real signed-in session (password,
TOTP, the session's CSRF token in its forms) and an API token.

Whatever arrives: never a 5xx, never a response its operation's schema does not describe
(status, content type, JSON body), and a JSON refusal never quotes a value that was sent (it
may be personal data). ``make test`` runs a few examples per operation on each backend;
``make fuzz`` sets ``GARDIEN_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from schemathesis import APIOperation, GenerationMode, Response
from schemathesis import Case as AnyCase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gardien.deps import State
from gardien.storage.clock import FrozenClock
from tests.security.signin import create_token, signed_in

EXAMPLES = int(os.environ.get("GARDIEN_FUZZ_EXAMPLES", "6"))
"""Examples per operation and mode (positive, negative); ``make fuzz`` raises it."""
Operation = APIOperation[Any, Any, Any, Any]
Case = AnyCase[Operation]
ECHO_MINIMUM = 8
"""A sent value this long or longer must not reappear in a JSON refusal (shorter ones may be
words of the message itself)."""
SESSION_ENDING = {"/admin/logout", "/admin/password", "/admin/users/{user_id}/disable"}
"""Forms that would end the fuzzing session itself: fuzzed without the session's CSRF token,
so they are refused before doing anything."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def sent_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from sent_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from sent_strings(item)


def echoed(case: Case, body: str) -> list[str]:
    """Values of the request body or query that reappear in a response body."""
    values = [*sent_strings(case.body), *sent_strings(case.query or {})]
    return [
        value
        for value in values
        if len(value.strip()) >= ECHO_MINIMUM and value in body and value.strip() == value
    ]


@dataclass
class Caller:
    """How the fuzzer reaches the admin: a signed-in session's cookie and CSRF token, and an
    API token for the admin API."""

    cookies: dict[str, str]
    csrf: str
    token: str
    failures: list[str] = field(default_factory=list)
    ran: int = 0

    def call(self, operation: Operation, case: Case) -> Response:
        if not operation.path.startswith("/admin"):
            return case.call()
        if isinstance(case.body, dict) and "csrf" in case.body:
            if operation.path not in SESSION_ENDING:
                case.body["csrf"] = self.csrf
        headers = {}
        if operation.path.startswith("/admin/api/"):
            headers["Authorization"] = f"Bearer {self.token}"
        return case.call(cookies=self.cookies, headers=headers)

    def check(self, operation: Operation, case: Case, response: Response) -> None:
        name = f"{operation.method.upper()} {operation.path}: {response.status_code}"
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as error:
            kinds = sorted({type(failure).__name__ for failure in error.exceptions})
            reason = str(error.exceptions[0]).splitlines()[-1][:200]
            self.failures.append(f"{name} {kinds} {reason} | {case.as_curl_command()[:300]}")
            return
        content_type = response.headers.get("content-type", [""])[0]
        if response.status_code >= 400 and "json" in content_type:
            found = echoed(case, response.text)
            if found:
                self.failures.append(f"{name} echoes {json.dumps(found)[:200]}")

    def exercise(self, operation: Operation, mode: GenerationMode) -> None:
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Case) -> None:
            self.ran += 1
            self.check(operation, case, self.call(operation, case))

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # An operation with nothing to make invalid (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE


def test_every_operation_survives_hostile_input(
    client: TestClient, state: State, clock: FrozenClock
) -> None:
    admin = signed_in(client, state, clock, "fuzz-admin@example.org", "admin")
    caller = Caller(
        cookies=dict(admin.client.cookies),
        csrf=admin.csrf,
        token=create_token(admin, "fuzzing", "auditor"),
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has an invalid operation: {result}"
        operations.append(result.ok())
    assert len(operations) > 70  # every public and admin operation is in the schema
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            caller.exercise(operation, mode)
    assert caller.ran >= len(operations) * min(EXAMPLES, 2)
    assert not caller.failures, "\n".join(sorted(set(caller.failures))[:40])
