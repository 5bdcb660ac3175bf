"""`baton import` refuses a file whose lines, chains or meaning do not hold, naming the line.

Each case takes a real export of one session with every kind of event (tests/infra/
exports.py: seq k is on line k + 1, its two refusals on lines 17 and 18, the end line 19),
edits it, and, for the rules about meaning, computes every hash again: the chains hold, so
only the meaning check can refuse it. Both backends write the export; nothing is written
when a file is refused.
"""

import copy
import io
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.ports import SessionStore
from baton.infra.audit import verify
from baton.infra.database import create_engine
from baton.infra.export_format import ImportRefused
from baton.infra.migrate import upgrade_to_head
from baton.infra.projection import check_sessions
from baton.infra.settings import Settings
from baton.infra.stores import open_store
from baton.infra.transfer import export_sessions
from tests.databases import fresh_database
from tests.infra.exports import Record, exported, import_text, rehash, rich_session, text
from tests.infra.test_audit import five_turns
from tests.infra.test_projection import varied_sessions

Edit = Callable[[list[Record]], list[Record]]


@pytest.fixture(scope="module")
async def source(store: SessionStore, engine: AsyncEngine) -> list[Record]:
    return await exported(engine, await rich_session(store))


def setting(index: int, **fields: Any) -> Edit:
    def edit(records: list[Record]) -> list[Record]:
        records[index].update(fields)
        return records

    return edit


def data(index: int, **fields: Any) -> Edit:
    def edit(records: list[Record]) -> list[Record]:
        records[index]["data"].update(fields)
        return records

    return edit


def copied(after: int, index: int, **fields: Any) -> Edit:
    """A copy of line `index`, inserted after line `after` (list indexes)."""

    def edit(records: list[Record]) -> list[Record]:
        records.insert(after + 1, {**copy.deepcopy(records[index]), **fields})
        return records

    return edit


def removed(*indexes: int) -> Edit:
    def edit(records: list[Record]) -> list[Record]:
        return [record for number, record in enumerate(records) if number not in indexes]

    return edit


SOMEONE = "f" * 64
MEANING = {
    "the first event is not 'started'": (setting(1, kind="claimed"), "line 2: a session begins"),
    "'started' claims turn 1": (setting(1, turn=2), "line 2: a session begins with 'started'"),
    "a second 'started'": (setting(4, kind="started"), "line 5: a second 'started' (seq 4)"),
    "a record outside a claim": (copied(7, 6), "line 9: 'record' of turn 2 outside a claim"),
    "a renewal outside a claim": (copied(7, 5), "line 9: 'renewed' of turn 2 outside a claim"),
    "a commit outside a claim": (
        removed(11, 12, 13),
        "line 12: 'committed' of turn 3 outside a claim",
    ),
    "a claim while a turn is in flight": (
        copied(5, 4),
        "line 7: 'claimed' while turn 2 is in flight",
    ),
    "a claim that skips a turn": (setting(4, turn=3), "line 5: 'claimed' turn 3: after turn 1"),
    "a record of another turn": (setting(6, turn=1), "line 7: 'record' names turn 1, but the"),
    "a commit naming another turn": (setting(7, turn=3), "line 8: 'committed' names turn 3"),
    "a record after 'closed'": (copied(15, 2), "line 17: 'record' after 'closed'"),
    "a claim after 'closed'": (copied(15, 4, turn=4), "line 17: 'claimed' after 'closed'"),
    "a close while a turn is in flight": (
        setting(5, kind="closed", data={"cause": "client"}),
        "line 6: 'closed' while turn 2 is in flight",
    ),
    "a close naming another turn": (setting(15, turn=2), "line 16: 'closed' names turn 2"),
    "an expiry not followed by a claim": (
        setting(13, kind="record", data={"record": 1}),
        "line 14: 'record' after 'expired'",
    ),
    "a second cancel in one turn": (copied(9, 9), "line 11: a second 'cancel-requested'"),
    "a commit consuming another token": (
        setting(7, consumed=SOMEONE),
        "line 8: 'committed' consumes a token other than the one line 4 issued",
    ),
    "the first commit consuming a token": (
        setting(3, consumed=SOMEONE),
        "line 4: the first commit of a session consumes no token",
    ),
    "a principal the session is not visible to": (
        data(4, principal="key:mallory"),
        "line 5: 'claimed' by 'key:mallory': the session is 'key:alice''s alone",
    ),
    "a recovery of a turn that never committed": (
        setting(16, kind="recovered", data={"turn": 9, "via": "read"}),
        "line 17: a recovery of turn 9, which never committed (the last is 3)",
    ),
    "a refusal for no known reason": (data(16, reason="bored"), "line 17: a refusal names"),
    "a claim without its input": (
        lambda records: [*records[:4], _without(records[4], "input"), *records[5:]],
        "line 5: the data of a 'claimed' event lacks 'input'",
    ),
    "a lease owner that is not text": (data(4, owner=5), "line 5: a lease names its owner"),
    "an outcome of no known status": (data(3, status="won"), "line 4: an outcome's status"),
    "refusals of a session without events": (
        removed(*range(1, 16)),
        "line 2: a session with refusals or recoveries but no events",
    ),
}


def _without(record: Record, key: str) -> Record:
    changed = copy.deepcopy(record)
    del changed["data"][key]
    return changed


async def refused(engine: AsyncEngine, content: str | bytes) -> str:
    with pytest.raises(ImportRefused) as refusal:
        await import_text(engine, content)
    return str(refusal.value)


@pytest.mark.parametrize("case", MEANING)
async def test_a_file_whose_chains_hold_but_whose_meaning_does_not_is_refused(
    engine: AsyncEngine, source: list[Record], case: str
) -> None:
    edit, expected = MEANING[case]
    crafted = rehash(edit(copy.deepcopy(source)))
    assert expected in await refused(engine, text(crafted))


async def test_a_token_issued_twice_in_the_file_is_refused(
    engine: AsyncEngine, source: list[Record]
) -> None:
    records = copy.deepcopy(source)
    records[7]["issued"] = records[3]["issued"]
    message = await refused(engine, text(rehash(records)))
    assert "line 8: 'committed' issues a token already seen, at line 4" in message


async def test_a_token_another_session_of_the_file_issued_is_refused(
    store: SessionStore, engine: AsyncEngine, source: list[Record]
) -> None:
    other = await exported(engine, await rich_session(store))
    records = [*copy.deepcopy(source[:-1]), *copy.deepcopy(other[1:])]
    records[20]["issued"] = records[3]["issued"]  # the other session's first commit: line 21
    message = await refused(engine, text(rehash(records)))
    assert "line 21: 'committed' issues a token already seen, at line 4" in message


async def test_a_session_that_comes_back_later_in_the_file_is_refused(
    store: SessionStore, engine: AsyncEngine, source: list[Record]
) -> None:
    other = await exported(engine, await rich_session(store))
    records = [*source[:17], *other[1:-1], source[17], source[-1]]
    message = await refused(engine, text(rehash(copy.deepcopy(records), renumber=False)))
    assert f"line 35: session {source[1]['sessionId']} appears twice" in message


CHAINS = {
    "a seq left out": (removed(6), "line 7: seq 6 is missing (deleted?); found 7 instead"),
    "a seq repeated": (setting(6, seq=5), "line 7: seq 5 appears again or out of order"),
    "a refusal place left out": (setting(17, refusalSeq=3), "line 18: refusal 2 is missing"),
}


@pytest.mark.parametrize("case", CHAINS)
async def test_seqs_and_refusal_places_run_one_by_one(
    engine: AsyncEngine, source: list[Record], case: str
) -> None:
    edit, expected = CHAINS[case]
    crafted = rehash(edit(copy.deepcopy(source)), renumber=False)
    assert expected in await refused(engine, text(crafted))


FIELDS = {
    "a refusal with a seq": (setting(16, seq=3), "line 17: a 'refused' event takes no seq"),
    "a commit that issues nothing": (
        setting(3, issued=None),
        "line 4: a 'committed' event issues a token",
    ),
    "a record with a token": (setting(2, consumed=SOMEONE), "line 3: a 'record' event consumes"),
    "a seq as text": (
        setting(5, seq="5"),
        'line 6: seq must be a positive integer or null, not "5"',
    ),
    "a seq as a boolean": (setting(5, seq=True), "line 6: seq must be a positive integer"),
    "an unknown kind": (setting(5, kind="jumped"), "line 6: kind must be one of"),
    "a session id that is no UUID": (setting(5, sessionId="s-1"), "line 6: sessionId must be"),
    "data that is no object": (setting(5, data=[1]), "line 6: data must be a JSON object"),
    "a hash in capitals": (
        lambda records: setting(5, hash=records[5]["hash"].upper())(records),
        "line 6: hash must be a SHA-256 digest",
    ),
    "a time without microseconds": (
        setting(5, recordedAt="2026-01-01T00:00:00Z"),
        "line 6: recordedAt must be a UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ",
    ),
    "a missing field": (
        lambda records: [*records[:5], _dropped(records[5], "hash"), *records[6:]],
        "line 6: the field 'hash' is missing",
    ),
    "an unexpected field": (setting(5, extra=1), "line 6: unexpected field 'extra'"),
    "a line that is no object": (setting(5, sessionId=None), "line 6: sessionId must be"),
}


def _dropped(record: Record, key: str) -> Record:
    return {name: value for name, value in record.items() if name != key}


@pytest.mark.parametrize("case", FIELDS)
async def test_a_field_of_the_wrong_type_or_shape_is_refused(
    engine: AsyncEngine, source: list[Record], case: str
) -> None:
    edit, expected = FIELDS[case]
    crafted = edit(copy.deepcopy(source))
    assert expected in await refused(engine, text(crafted))


def replaced(number: int, line: str) -> Callable[[str], str]:
    def edit(content: str) -> str:
        lines = content.splitlines(keepends=True)
        lines[number - 1] = line
        return "".join(lines)

    return edit


FILES: dict[str, tuple[Callable[[str], str | bytes], str]] = {
    "an empty file": (lambda _: "", "the file is empty"),
    "a line that is not JSON": (replaced(5, "{not json\n"), "line 5: not JSON (Expecting"),
    "a line that is an array": (replaced(5, "[1, 2]\n"), "line 5: not a JSON object"),
    "NaN in the data": (
        replaced(5, '{"sessionId": "x", "data": {"record": NaN}}\n'),
        "line 5: not valid JSON: NaN is not a number JSON allows",
    ),
    "a key twice": (
        replaced(5, '{"kind": "record", "kind": "claimed"}\n'),
        "line 5: not valid JSON: the key 'kind' appears twice",
    ),
    "another format": (
        replaced(1, '{"format": "csv", "version": 2}\n'),
        "line 1: not a baton-export file (its first line is not the header)",
    ),
    "no header at all": (lambda content: content.split("\n", 1)[1], "line 1: not a baton-export"),
    "an unknown version": (
        replaced(1, '{"format": "baton-export", "version": 3}\n'),
        "line 1: baton-export version 3: this baton reads versions 1 and 2",
    ),
    "a version that is a boolean": (
        replaced(1, '{"format": "baton-export", "version": true}\n'),
        "line 1: baton-export version True",
    ),
    "a last line cut in the middle": (
        lambda content: content[:-12],
        "line 19: the file ends in the middle of this line: it was cut short",
    ),
    "an event line cut in the middle": (
        lambda content: "".join(content.splitlines(keepends=True)[:9])[:-40],
        "line 9: the file ends in the middle of this line",
    ),
    "a file cut at a line's end": (
        lambda content: "".join(content.splitlines(keepends=True)[:-1]),
        "line 18: the file ends without its end line: it was cut short",
    ),
    "a header alone": (
        lambda content: content.splitlines(keepends=True)[0],
        "line 1: the file ends without its end line",
    ),
    "an end line that miscounts": (
        replaced(19, '{"end": "baton-export", "sessions": 1, "events": 16}\n'),
        "line 19: the end line does not match the file, which holds 1 session(s) and 17",
    ),
    "a line after the end line": (
        lambda content: content + content.splitlines(keepends=True)[1],
        "line 20: nothing may follow the end line (line 19)",
    ),
    "bytes that are not UTF-8": (
        lambda content: replaced(5, "\n")(content).encode().replace(b"\n\n", b"\n\xff\n", 1),
        "line 5: not UTF-8 text",
    ),
}


@pytest.mark.parametrize("case", FILES)
async def test_a_malformed_file_is_refused_with_its_line(
    engine: AsyncEngine, source: list[Record], case: str
) -> None:
    edit, expected = FILES[case]
    assert expected in await refused(engine, edit(text(source)))


async def test_a_version_1_file_has_no_end_line_and_passes_the_checks(
    engine: AsyncEngine, source: list[Record]
) -> None:
    """A file of the first format still reads; only the target's copy of it is refused."""
    records = [{**source[0], "version": 1}, *source[1:-1]]
    assert "is already in this database" in await refused(engine, text(records))


async def test_a_token_already_in_the_target_is_refused(
    engine: AsyncEngine, source: list[Record]
) -> None:
    """The same events under a new session id: every check of the file passes, but its
    tokens were issued here already."""
    records = copy.deepcopy(source)
    new_id = str(uuid.uuid4())
    for record in records[1:-1]:
        record["sessionId"] = new_id
    message = await refused(engine, text(rehash(records)))
    assert "line 4: its token is in this database already" in message


@pytest.fixture
async def target(backend: str, tmp_path: Path) -> Any:
    with fresh_database(backend, tmp_path) as url:
        engine = create_engine(Settings(database_url=url))
        await upgrade_to_head(engine)
        yield engine
        await engine.dispose()


async def test_the_untouched_export_imports_and_verifies(
    target: AsyncEngine, source: list[Record]
) -> None:
    assert await import_text(target, text(source)) == (1, 17)
    assert [broken async for broken in verify(target)] == []
    assert await check_sessions(target) == []
    assert await exported(target, source[1]["sessionId"]) == source


async def test_an_export_of_every_kind_of_history_imports_whole(
    backend: str, tmp_path: Path, target: AsyncEngine
) -> None:
    """No false refusal: the histories the store tests make (commits, a failed turn, a
    takeover, a renewal in flight, a failed start, refusals, a close) pass every check."""
    with fresh_database(backend, tmp_path / "source") as url:
        settings = Settings(database_url=url)
        engine = create_engine(settings)
        await upgrade_to_head(engine)
        async with open_store(settings) as store:
            await varied_sessions(store)
            await five_turns(store)
            await rich_session(store)
        out = io.StringIO()
        written = await export_sessions(engine, out)
        await engine.dispose()
    assert await import_text(target, out.getvalue()) == (4, written)
    assert [broken async for broken in verify(target)] == []
    assert await check_sessions(target) == []
