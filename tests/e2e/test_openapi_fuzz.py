"""Schemathesis against a real `baton serve` on both backends (issue 13): every operation of
the schema the server publishes at /schema/openapi.json, the turn API and (with an admin key)
the audit API, with generated requests valid and invalid; then sessions driven through the
schema's links: a start, then the next turn, a read, its events, a cancel or a close, each
with the session and the token the previous reply carried.

No generated request may get a 5xx, and every answer must be what the schema documents: its
status, its body, its headers; a valid request must be taken and an invalid one refused.
Generation is derandomized and replays nothing from earlier runs, so a run fails the same
way on every machine.
"""

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.databases import fresh_database
from tests.e2e.server import BatonServer

pytestmark = pytest.mark.e2e
ADMIN_KEY = "admin-key-for-schemathesis-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FUZZED_PER_OPERATION = 40  # the fuzzing phase's cases, besides the coverage phase's
SCENARIOS = 40  # sessions driven through the links, of up to STEPS requests each
STEPS = 6
# At least this many requests per backend and test (some 700 and 300 are made): a schema or
# a schemathesis that quietly generates next to nothing must not pass for a clean run.
FEWEST_REQUESTS = {
    "test_every_operation_answers_as_documented": 500,
    "test_sessions_driven_through_the_links_answer_as_documented": 150,
}
REQUEST_SECONDS = 30
KEY_HEADER = "Idempotency-Key"
START_KEY = re.compile(r"[!-~]{22,255}")  # a key a start takes (api/openapi.py publishes it)

load_all_checks()
POSITIVE_DATA_ACCEPTANCE = schemathesis.checks.positive_data_acceptance


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatonServer]:
    directory = tmp_path_factory.mktemp(f"schemathesis-{backend}")
    with (
        pytest.MonkeyPatch.context() as patch,
        fresh_database(backend, directory) as url,
    ):
        patch.setenv("BATON_ADMIN_KEYS", ADMIN_KEY)
        with BatonServer(url, directory / "server.log") as running:
            yield running


@pytest.fixture
def api(server: BatonServer) -> OpenApiSchema:
    """The schema as the server publishes it, and how to ask the server."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": server.url,
            "request-timeout": REQUEST_SECONDS,
            "generation": {
                "max-examples": FUZZED_PER_OPERATION,
                "deterministic": True,  # Hypothesis' derandomize: the same cases every run
                "database": "none",  # and no failing example kept from an earlier run
            },
            # The audit API answers its key only: every admin operation is asked with it.
            "operations": [{"include-tag": "admin", "headers": ADMIN}],
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json", config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's `from_fixture` names each operation's report by rewriting the
    item's `_nodeid`, which pytest 9.2 no longer has (`nodeid` is derived now): give it the
    attribute it reads and writes. Only report labels depend on it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# ---------------------------------------------------------------- what a valid request gets

# A request the schema calls valid may still be refused for what no schema can say: the state
# the request meets, or a value only an earlier answer makes good. Each such refusal is named
# here, with the operations it may answer; any other refusal of a valid request fails.
REFUSED_BY_STATE: dict[tuple[int, str], set[str] | None] = {  # None: any operation
    # The session was closed by an earlier request of the run (as 404 unknown-session and
    # 409 stale-token are, which schemathesis allows a valid request by default).
    (410, "closed"): None,
    # An Idempotency-Key an earlier request of the run used with another input.
    (422, "idempotency-mismatch"): None,
    # The token may come in the body or the header (the body wins): one of the two is needed,
    # and OpenAPI cannot make a header required only when a body field is absent.
    (400, "missing-token"): {"POST /v1/session/{session_id}/message"},
    # A feed cursor is one an earlier page handed out, of a form each backend has its own.
    (400, "bad-request"): {"GET /v1/admin/events"},
}
CURSOR_REFUSED = "after is not a cursor this server handed out"


def _refused_by_state(response: Response, case: Case) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or not isinstance(body.get("reason"), str):
        return False
    key = (response.status_code, body["reason"])
    if key not in REFUSED_BY_STATE:
        return False
    if key == (400, "bad-request") and not str(body.get("error")).startswith(CURSOR_REFUSED):
        return False
    operations = REFUSED_BY_STATE[key]
    return operations is None or case.operation.label in operations


def valid_requests_are_taken(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schemathesis' positive_data_acceptance, but for the refusals named above."""
    if _refused_by_state(response, case):
        return None
    return POSITIVE_DATA_ACCEPTANCE(ctx, response, case)


CHECKS: dict[str, Any] = {
    "excluded_checks": [POSITIVE_DATA_ACCEPTANCE],
    "additional_checks": [valid_requests_are_taken],
}


# ---------------------------------------------------------------- every operation


@pytest.fixture
def made(backend: str, request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """The requests a test made, by operation; too few fails it."""
    counted: Counter[str] = Counter()
    yield counted
    test = request.node.originalname
    print(f"\n{test}[{backend}]: {counted.total()} requests, {dict(counted)}")
    assert counted.total() >= FEWEST_REQUESTS[test], f"only {counted.total()} requests made"


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case, made: Counter[str]) -> None:
    made[case.operation.label] += 1
    case.call_and_validate(**CHECKS)


# ---------------------------------------------------------------- sessions through the links


def test_sessions_driven_through_the_links_answer_as_documented(
    api: OpenApiSchema, made: Counter[str]
) -> None:
    class Sessions(api.as_state_machine()):  # type: ignore[misc]
        begun = 0

        def setup(self) -> None:
            Sessions.begun += 1
            self.scenario = Sessions.begun

        def before_call(self, case: Case) -> None:
            """Each scenario gets Idempotency-Keys of its own: Hypothesis draws the same key
            in many scenarios, and a key an earlier scenario used changes what a start
            answers (a replay, or 422), so the rules the next step can take would depend on
            the scenarios before it, which Hypothesis refuses as flaky. A key that is not a
            valid one stays as drawn."""
            made[case.operation.label] += 1
            key = (case.headers or {}).get(KEY_HEADER)
            if key is not None and START_KEY.fullmatch(key):
                case.headers[KEY_HEADER] = hashlib.sha256(
                    f"{self.scenario}:{key}".encode()
                ).hexdigest()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            # The operations' headers of the config are not applied in a state machine.
            return {"headers": ADMIN} if "admin" in (case.operation.tags or ()) else {}

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, transport_kwargs=kwargs or None, **CHECKS)

    Sessions.run(
        settings=hypothesis.settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            # As schemathesis runs its own: no shrinking, which would replay scenarios
            # against a server whose state has moved on.
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
