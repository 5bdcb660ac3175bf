"""Only digests of tokens are stored: no table holds a raw continuation token."""

from httpx import AsyncClient
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.domain.identifiers import digest_token
from tests.api.protocol import send, start


async def every_cell_as_text(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        cells = []
        for table in tables:
            rows = await conn.execute(select(text("*")).select_from(text(table)))
            cells.extend(str(value) for row in rows for value in row)
    return "\n".join(cells)


async def test_no_table_holds_a_raw_token(client: AsyncClient, engine: AsyncEngine) -> None:
    session = await start(client)
    tokens = [session["continuationToken"]]
    for message in ("two", "/park", "/fail", "four"):
        response = await send(client, session["sessionId"], tokens[-1], message)
        if response.status_code == 200:
            tokens.append(response.json()["continuationToken"])
    await send(client, session["sessionId"], tokens[0])  # a replay, refused and recorded
    await client.post("/v1/session", json={"continuationToken": tokens[-1]})  # on start

    stored = await every_cell_as_text(engine)
    assert len(tokens) == 4
    for token in tokens:
        assert token not in stored
    # ...while the digests that stand in for them are there, so the scan saw the rows.
    assert all(digest_token(token) in stored for token in tokens)
