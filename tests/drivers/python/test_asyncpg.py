"""asyncpg through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

asyncpg prepares every statement under a name (its statement cache) and uses the extended protocol
only, so in transaction mode this exercises pgproxy's statement sharing on every query.
Prints one PASS/FAIL line per check; exits 1 if any check failed.
"""

import asyncio
import datetime as dt
import decimal
import io
import json
import time
import uuid

import asyncpg

from common import DB, HOST, PASSWORD, PORT, TAG, TARGET, USER, Checks, eq

C = Checks("asyncpg")
T = f"drv_asyncpg_{TAG}"


async def connect(**kw):
    return await asyncpg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB, timeout=10, **kw
    )


async def t_connect():
    conn = await connect()
    try:
        eq(await conn.fetchval("SELECT current_user"), USER, "current_user")
        assert conn.get_server_version().major >= 10, conn.get_server_version()
        eq(conn.get_settings().client_encoding, "UTF8", "client_encoding")
    finally:
        await conn.close()


async def t_simple():
    conn = await connect()
    try:
        # execute() without arguments uses the simple protocol, several statements allowed
        await conn.execute(
            f"DROP TABLE IF EXISTS {T}; CREATE TABLE {T} (id int PRIMARY KEY, v text);"
            f" INSERT INTO {T} VALUES (1, 'a'), (2, 'b')"
        )
        eq(await conn.execute(f"UPDATE {T} SET v = v || '!'"), "UPDATE 2", "status")
        rows = await conn.fetch(f"SELECT id, v FROM {T} ORDER BY id")
        eq([tuple(r) for r in rows], [(1, "a!"), (2, "b!")], "rows")
        eq(await conn.fetch(f"SELECT * FROM {T} WHERE false"), [], "no rows")
    finally:
        await conn.close()


async def t_types():
    conn = await connect()
    try:
        await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        vals = (
            42,
            2**40 + 7,
            "héllo ☃ 'quote'",
            b"\x00\x01\xffbinary",
            decimal.Decimal("12345678901234567890.123456789"),
            dt.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=dt.timezone.utc),
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            {"a": [1, 2, {"b": None}], "c": "d"},
            {"jb": True},
            [1, 2, 3],
            ["x", None, "z"],
            None,
            1.5,
            True,
            dt.date(1999, 12, 31),
        )
        row = await conn.fetchrow(
            "SELECT $1::int, $2::bigint, $3::text, $4::bytea, $5::numeric, $6::timestamptz,"
            " $7::uuid, $8::json, $9::jsonb, $10::int[], $11::text[], $12::text, $13::float8,"
            " $14::bool, $15::date",
            *vals,
        )
        for k, (a, e) in enumerate(zip(tuple(row), vals)):
            eq(a, e, f"column {k}")
        # a composite/record and an enum need type introspection queries first
        await conn.execute(f"DROP TYPE IF EXISTS {T}_mood; CREATE TYPE {T}_mood AS ENUM ('sad', 'ok', 'happy')")
        eq(await conn.fetchval(f"SELECT $1::{T}_mood", "happy"), "happy", "enum")
        eq(tuple(await conn.fetchval("SELECT ROW(1, 'x')::record")), (1, "x"), "record")
        blob = bytes(range(256)) * 1000
        eq(await conn.fetchval("SELECT $1::bytea", blob), blob, "big bytea")
        await conn.execute(f"DROP TYPE {T}_mood")
    finally:
        await conn.close()


async def t_prepared():
    conn = await connect()
    try:
        # the statement cache: the same text is prepared once and executed by name
        for i in range(20):
            r = await conn.fetchrow("SELECT $1::int * 2 AS a, $2::text || 'x' AS b", i, str(i))
            eq((r["a"], r["b"]), (i * 2, f"{i}x"), f"cached statement {i}")
        # explicit prepared statement objects
        st = await conn.prepare("SELECT $1::bigint + 1")
        for i in range(15):
            eq(await st.fetchval(i), i + 1, f"prepared {i}")
        st2 = await conn.prepare("SELECT generate_series(1, $1::int)")
        for i in range(10):
            eq(len(await st2.fetch(i + 1)), i + 1, f"series {i}")
        # executemany (pipelined Bind/Execute, one Sync)
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {T}_m (a int, b text)")
        await conn.executemany(f"INSERT INTO {T}_m VALUES ($1, $2)", [(i, f"r{i}") for i in range(50)])
        eq(tuple(await conn.fetchrow(f"SELECT count(*), sum(a) FROM {T}_m")), (50, 1225), "executemany")
        # prepared statements used inside and outside transactions, interleaved
        for i in range(6):
            async with conn.transaction():
                eq(await st.fetchval(100 + i), 101 + i, f"in transaction {i}")
                eq(await conn.fetchval("SELECT $1::int * 2 AS a", i), i * 2, f"cached in tx {i}")
            eq(await st.fetchval(200 + i), 201 + i, f"after transaction {i}")
        await conn.execute(f"DROP TABLE {T}_m")
        # a cached statement whose result type changes (asyncpg re-prepares on the error).
        # Known gap on a replicated shard (docs/DEVELOPMENT.md): a read of the statement may be
        # balanced to a node where pgproxy prepares it fresh, so no 0A000 warns asyncpg.
        if TARGET == "replicated":
            print("SKIP asyncpg replicated: cached statement after ALTER ... TYPE (known gap)")
            return
        await conn.execute(f"CREATE TABLE {T}_alt (a int)")
        await conn.execute(f"INSERT INTO {T}_alt VALUES (1)")
        for _ in range(2):
            eq(await conn.fetchval(f"SELECT * FROM {T}_alt"), 1, "before ALTER")
        await conn.execute(f"ALTER TABLE {T}_alt ALTER COLUMN a TYPE bigint")
        try:
            v = await conn.fetchval(f"SELECT * FROM {T}_alt")
            eq(v, 1, "after ALTER")
        except asyncpg.exceptions.InvalidCachedStatementError:
            pass  # asyncpg raises this at most once, then re-prepares
        eq(await conn.fetchval(f"SELECT * FROM {T}_alt"), 1, "after ALTER, again")
        await conn.execute(f"DROP TABLE {T}_alt")
    finally:
        await conn.close()


async def t_transactions():
    conn = await connect()
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {T}_tx (a int)")
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {T}_tx VALUES ($1)", 1)
        tr = conn.transaction()
        await tr.start()
        await conn.execute(f"INSERT INTO {T}_tx VALUES ($1)", 2)
        assert conn.is_in_transaction()
        await tr.rollback()
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {T}_tx VALUES (3)")
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(f"INSERT INTO {T}_tx VALUES (4)")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
        eq(await conn.fetchval(f"SELECT array_agg(a ORDER BY a) FROM {T}_tx"), [1, 3], "contents")
        # serializable, read only
        async with conn.transaction(isolation="serializable", readonly=True):
            eq(await conn.fetchval("SHOW transaction_isolation"), "serializable", "isolation")
        await conn.execute(f"DROP TABLE {T}_tx")
    finally:
        await conn.close()


async def t_error_in_tx():
    conn = await connect()
    try:
        tr = conn.transaction()
        await tr.start()
        await conn.fetchval("SELECT 1")
        try:
            await conn.fetchval("SELECT 1/0")
            raise AssertionError("no error")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        try:
            await conn.fetchval("SELECT $1::int", 1)
            raise AssertionError("statement ran in an aborted transaction")
        except asyncpg.exceptions.InFailedSQLTransactionError:
            pass
        await tr.rollback()
        eq(await conn.fetchval("SELECT 2"), 2, "after rollback")
        for i in range(8):
            try:
                v = await conn.fetchval("SELECT 10 / $1::int", 0 if i % 2 else 5)
                eq(v, 2, "10/5")
            except asyncpg.exceptions.DivisionByZeroError:
                assert i % 2 == 1
        try:
            await conn.fetchval("SELECT * FROM no_such_table_xyz WHERE a = $1", 1)
        except asyncpg.exceptions.UndefinedTableError:
            pass
        eq(await conn.fetchval("SELECT 3"), 3, "after parse error")
    finally:
        await conn.close()


async def t_copy():
    conn = await connect()
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}_c; CREATE TABLE {T}_c (a int, b text, c bytea)")
        n = 5000
        res = await conn.copy_records_to_table(
            f"{T}_c", records=[(i, f"row {i}", bytes([i % 256])) for i in range(n)]
        )
        eq(res, f"COPY {n}", "copy_records_to_table")
        eq(tuple(await conn.fetchrow(f"SELECT count(*), sum(a) FROM {T}_c")), (n, n * (n - 1) // 2), "copied")
        # text COPY in from a file-like object
        src = io.BytesIO("".join(f"{-i}\tfile\n" for i in range(1, 101)).encode())
        await conn.copy_to_table(f"{T}_c", source=src, columns=["a", "b"])
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_c WHERE b = 'file'"), 100, "copy_to_table")
        # COPY out
        out = io.BytesIO()
        await conn.copy_from_query(f"SELECT a, b FROM {T}_c WHERE a >= 0 ORDER BY a", output=out)
        lines = out.getvalue().decode().splitlines()
        eq(len(lines), n, "copy out lines")
        eq(lines[7], "7\trow 7", "copy out line 7")
        out2 = io.BytesIO()
        await conn.copy_from_table(f"{T}_c", output=out2, format="binary")
        assert len(out2.getvalue()) > n * 10, "binary copy out too short"
        # bad data: an error, the connection stays usable
        try:
            await conn.copy_to_table(f"{T}_c", source=io.BytesIO(b"1\nnope\n"), columns=["a"])
            raise AssertionError("no error for bad data")
        except asyncpg.exceptions.InvalidTextRepresentationError:
            pass
        # COPY inside a transaction that rolls back
        tr = conn.transaction()
        await tr.start()
        await conn.copy_records_to_table(f"{T}_c", records=[(1, "x", None)])
        await tr.rollback()
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_c"), n + 100, "after failures")
        await conn.execute(f"DROP TABLE {T}_c")
    finally:
        await conn.close()


async def t_listen_notify():
    chan = f"achan_{TAG}"
    listener = await connect()
    notifier = await connect()
    try:
        q = asyncio.Queue()
        await listener.add_listener(chan, lambda c, pid, ch, payload: q.put_nowait((ch, payload)))
        await notifier.execute(f"NOTIFY {chan}, 'one'")
        await notifier.fetchval("SELECT pg_notify($1, $2)", chan, "two")
        got = [await asyncio.wait_for(q.get(), 10), await asyncio.wait_for(q.get(), 10)]
        eq(got, [(chan, "one"), (chan, "two")], "notifications")
        eq(await listener.fetchval("SELECT 1"), 1, "listener still works")
        await listener.remove_listener(chan, lambda *a: None)
    finally:
        await listener.close()
        await notifier.close()


async def t_settings():
    conn = await connect(server_settings={"application_name": "asyncpg-drv", "TimeZone": "Asia/Tokyo"})
    try:
        for i in range(5):
            eq(await conn.fetchval("SELECT current_setting('application_name')"), "asyncpg-drv", f"startup {i}")
            eq(await conn.fetchval("SHOW TimeZone"), "Asia/Tokyo", f"startup TimeZone {i}")
        await conn.execute("SET search_path = pg_catalog, public")
        await conn.execute("SET work_mem = '7MB'")
        for i in range(5):
            async with conn.transaction():
                eq(await conn.fetchval("SHOW work_mem"), "7MB", f"SET work_mem {i}")
            eq(await conn.fetchval("SHOW search_path"), "pg_catalog, public", f"search_path {i}")
    finally:
        await conn.close()


async def t_concurrency():
    n_tasks, n_iter = 12, 25

    async def worker(k):
        conn = await connect()
        try:
            st = await conn.prepare("SELECT $1::int + 1, $2::text")
            for i in range(n_iter):
                v = k * 1000 + i
                r = tuple(await st.fetchrow(v, f"w{k}"))
                if r != (v + 1, f"w{k}"):
                    raise AssertionError(f"task {k} iteration {i}: got {r}")
                r = await conn.fetchval("SELECT $1::bigint * 3", v)
                if r != v * 3:
                    raise AssertionError(f"task {k} cached {i}: got {r}")
                if i % 5 == 0:
                    async with conn.transaction():
                        r = await conn.fetchval("SELECT $1::text || $2::text", f"a{k}", str(i))
                        if r != f"a{k}{i}":
                            raise AssertionError(f"task {k} tx {i}: got {r}")
        finally:
            await conn.close()

    res = await asyncio.gather(*(worker(k) for k in range(n_tasks)), return_exceptions=True)
    errs = [f"task {k}: {type(e).__name__}: {e}" for k, e in enumerate(res) if isinstance(e, BaseException)]
    if errs:
        raise AssertionError("; ".join(errs[:5]))


async def t_cursor():
    conn = await connect()
    try:
        async with conn.transaction():
            rows = [r[0] async for r in conn.cursor("SELECT generate_series(1, 100) WHERE $1", True, prefetch=7)]
            eq(rows, list(range(1, 101)), "iterated cursor")
            cur = await conn.cursor("SELECT g FROM generate_series(1, 50) g")
            eq([r[0] for r in await cur.fetch(5)], [1, 2, 3, 4, 5], "fetch 5")
            eq(await conn.fetchval("SELECT 'between'"), "between", "query between fetches")
            await cur.forward(10)
            eq((await cur.fetchrow())[0], 16, "after forward")
            eq(len(await cur.fetch(100)), 34, "rest")
    finally:
        await conn.close()


async def t_cancel():
    conn = await connect()
    try:
        t0 = time.monotonic()
        try:
            await conn.fetchval("SELECT pg_sleep(20)", timeout=0.5)
            raise AssertionError("no timeout")
        except asyncio.TimeoutError:
            pass
        took = time.monotonic() - t0
        assert took < 5, f"timeout took {took:.1f}s"
        eq(await conn.fetchval("SELECT 'alive'"), "alive", "usable after timeout")
        # the server-side query was really cancelled (not still running)
        eq(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' AND state = 'active'"),
            0, "pg_sleep still running")
        # inside a transaction
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute("SELECT pg_sleep(20)", timeout=0.5)
            raise AssertionError("no timeout in transaction")
        except asyncio.TimeoutError:
            pass
        await tr.rollback()
        eq(await conn.fetchval("SELECT $1::int", 7), 7, "usable after timeout in tx")
    finally:
        await conn.close()


async def t_cleanup():
    conn = await connect()
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}")
    finally:
        await conn.close()


async def main():
    print(f"asyncpg {asyncpg.__version__}, target {TARGET} {HOST}:{PORT}", flush=True)
    await C.arun("connect (SCRAM)", t_connect)
    await C.arun("simple queries", t_simple)
    await C.arun("parameters of many types", t_types)
    await C.arun("prepared statements (statement cache, prepare())", t_prepared)
    await C.arun("transactions: commit, rollback, savepoint", t_transactions)
    await C.arun("error in transaction, rollback, continue", t_error_in_tx)
    await C.arun("COPY (copy_records_to_table, copy_to_table, copy_from_query)", t_copy)
    await C.arun("LISTEN/NOTIFY (add_listener)", t_listen_notify)
    await C.arun("settings (startup server_settings and SET)", t_settings)
    await C.arun("12 concurrent tasks, prepared statements", t_concurrency, timeout=120)
    await C.arun("cursors (portals with prefetch)", t_cursor)
    await C.arun("query cancellation (timeout=)", t_cancel)
    await C.arun("cleanup", t_cleanup)


asyncio.run(main())
C.finish()
