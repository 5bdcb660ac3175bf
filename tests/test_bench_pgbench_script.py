"""The sql-floor-pg script is generated from the PostgreSQL store's own statements
(bench/baselines/pgbench_script.py): it sends exactly infra.postgres_sql.CLAIM and COMMIT,
and a statement it cannot rewrite completely stops the benchmark instead of measuring
something else. No database here; tests/test_bench.py runs the script through pgbench."""

import json
import re

import pytest

from baton.infra import postgres_sql
from baton.infra.tables import DIGEST_LENGTH
from bench.baselines import pgbench_script
from bench.baselines.pgbench_script import (
    CLAIM_VARIABLES,
    COMMIT_VARIABLES,
    ScriptError,
    build,
    check_variables,
    rewrite,
)


def _substituted(statement: str, variables: dict[int, str]) -> str:
    """The statement with each `$n` replaced by its variable, and nothing else changed (two
    parameters may share a variable: the store binds $12 and $14 to one digest)."""
    return re.sub(r"\$(\d+)", lambda m: f":{variables[int(m.group(1))]}", statement.strip())


@pytest.mark.parametrize(
    ("statement", "variables"),
    [(postgres_sql.CLAIM, CLAIM_VARIABLES), (postgres_sql.COMMIT, COMMIT_VARIABLES)],
    ids=["CLAIM", "COMMIT"],
)
def test_the_script_sends_the_store_statement_itself(
    statement: str, variables: dict[int, str]
) -> None:
    rewritten = rewrite(statement, variables)
    assert rewritten in build().text
    assert rewritten == _substituted(statement, variables)


def test_the_script_has_no_parameter_left_and_every_variable_defined() -> None:
    script = build()
    assert "$" not in script.text
    check_variables(script.text, script.defines)  # raises otherwise
    assert script.text.count("\\gset") == 3  # the session once, then the claim and the commit


def test_a_parameter_without_a_variable_stops_the_run() -> None:
    with pytest.raises(ScriptError, match=r"\$19 has no pgbench variable"):
        build(commit=postgres_sql.COMMIT.replace("RETURNING seq", "RETURNING seq, $19"))


def test_a_variable_for_a_parameter_the_store_dropped_stops_the_run() -> None:
    claim = postgres_sql.CLAIM.replace("claim_owner = $8", "claim_owner = 'x'")
    with pytest.raises(ScriptError, match=r"no longer has: \[8\]"):
        build(claim=claim)


def test_a_semicolon_in_a_statement_stops_the_run() -> None:
    with pytest.raises(ScriptError, match="semicolon"):
        build(claim=postgres_sql.CLAIM + "; SELECT 1")


def test_an_undefined_variable_or_a_leftover_parameter_is_refused() -> None:
    with pytest.raises(ScriptError, match="nothing defines"):
        check_variables("SELECT :nothing_sets_this", {})
    with pytest.raises(ScriptError, match=r"\$3 left"):
        check_variables("SELECT $3", {})
    check_variables("SELECT (:client_id)::bigint", {})  # a cast is not a variable


def test_the_constants_are_the_store_values_in_text_form() -> None:
    defines = build().defines
    assert json.loads(defines["claim_data"])["input"] == {"message": "x"}
    # The seal is not in the event's data: it goes to the recovery table ($14...$18).
    assert set(json.loads(defines["commit_data"])) == {"status", "output"}
    assert (defines["keep"], defines["new_state"]) == ("true", "null")  # the bench handler
    for payload in ("claim_payload", "commit_payload"):  # bytea's hex input form
        assert defines[payload].startswith("\\x")
        chained = json.loads(bytes.fromhex(defines[payload][2:]))
        assert set(chained) == {"consumed", "data", "issued", "kind", "recordedAt", "sessionId"}
    committed = json.loads(bytes.fromhex(defines["commit_payload"][2:]))
    assert len(committed["consumed"]) == len(committed["issued"]) == DIGEST_LENGTH
    assert all("\n" not in value for value in defines.values())


def test_the_script_is_generated_afresh_from_whatever_the_store_sends() -> None:
    claim = postgres_sql.CLAIM.replace("status = $6", "status = $6 AND turn >= 0")
    assert "status = :idle AND turn >= 0" in pgbench_script.build(claim=claim).text
