"""asyncpg through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

asyncpg prepares every statement under a name (its statement cache) and uses the extended protocol
only, so in transaction mode this exercises pgproxy's statement sharing on every query.
Prints one PASS/FAIL line per check; exits 1 if any check failed.
"""

import asyncio
import os
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


async def t_cursor_interleaved():
    conn = await connect()
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}_cw; CREATE TABLE {T}_cw (a int PRIMARY KEY, b text)")
        async with conn.transaction():
            # two cursors (named portals) open at once, fetched alternately, with writes and
            # other prepared statements between the fetches
            c1 = await conn.cursor("SELECT g FROM generate_series(1, 60) g WHERE g > $1", 0)
            st = await conn.prepare("SELECT g * 10 FROM generate_series(1, 40) g")
            c2 = await st.cursor()
            got1, got2 = [], []
            for i in range(8):
                got1 += [r[0] for r in await c1.fetch(5)]
                got2 += [r[0] for r in await c2.fetch(3)]
                await conn.execute(f"INSERT INTO {T}_cw VALUES ($1, $2)", i, f"v{i}")
                eq(await conn.fetchval(f"SELECT count(*) FROM {T}_cw"), i + 1, f"count after insert {i}")
            eq(got1, list(range(1, 41)), "cursor 1")
            eq(got2, [g * 10 for g in range(1, 25)], "cursor 2")
            eq(len(await c1.fetch(1000)), 20, "cursor 1 rest")
            eq(len(await c2.fetch(1000)), 16, "cursor 2 rest")
            # a prepared statement's cursor iterated with a small prefetch, while the loop body
            # runs other queries on the same connection
            total = 0
            async for r in st.cursor(prefetch=4):
                total += r[0]
                if r[0] % 100 == 0:
                    eq(await conn.fetchval("SELECT $1::int + 1", r[0]), r[0] + 1, "query inside async for")
            eq(total, 10 * 40 * 41 // 2, "prefetch sum")
        # the same prepared statement's cursor in a second and third transaction
        for k in range(2):
            async with conn.transaction():
                cur = await st.cursor()
                eq([r[0] for r in await cur.fetch(2)], [10, 20], f"cursor in transaction {k}")
        # a cursor over a table the transaction wrote to, then rolled back
        tr = conn.transaction()
        await tr.start()
        await conn.execute(f"DELETE FROM {T}_cw WHERE a >= 4")
        cur = await conn.cursor(f"SELECT a FROM {T}_cw ORDER BY a")
        eq([r[0] for r in await cur.fetch(10)], [0, 1, 2, 3], "cursor sees own delete")
        await tr.rollback()
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_cw"), 8, "after rollback")
        await conn.execute(f"DROP TABLE {T}_cw")
    finally:
        await conn.close()


async def t_executemany_big():
    conn = await connect()
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}_em; CREATE TABLE {T}_em (a int PRIMARY KEY, b text, c numeric)")
        n = 3000
        await conn.executemany(
            f"INSERT INTO {T}_em VALUES ($1, $2, $3)",
            [(i, f"row {i}" * 3, decimal.Decimal(i) / 7) for i in range(n)],
        )
        eq(tuple(await conn.fetchrow(f"SELECT count(*), sum(a) FROM {T}_em")), (n, n * (n - 1) // 2), "rows")
        # executemany is atomic: a duplicate key in the middle leaves nothing behind
        try:
            await conn.executemany(
                f"INSERT INTO {T}_em VALUES ($1, $2, $3)",
                [(n + i, "x", 1) for i in range(100)] + [(5, "dup", 1)] + [(n + 200 + i, "y", 1) for i in range(100)],
            )
            raise AssertionError("no error for a duplicate key")
        except asyncpg.exceptions.UniqueViolationError as e:
            eq(e.constraint_name, f"{T}_em_pkey", "constraint_name")
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_em"), n, "atomic executemany")
        # inside a transaction, UPDATEs by key, then rolled back
        async with conn.transaction():
            await conn.executemany(f"UPDATE {T}_em SET b = $2 WHERE a = $1", [(i, "upd") for i in range(0, n, 3)])
            eq(await conn.fetchval(f"SELECT count(*) FROM {T}_em WHERE b = 'upd'"), n // 3, "updated in tx")
            tr = conn.transaction()  # a savepoint
            await tr.start()
            await conn.executemany(f"DELETE FROM {T}_em WHERE a = $1", [(i,) for i in range(100)])
            await tr.rollback()
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_em WHERE b = 'upd'"), n // 3, "committed")
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_em"), n, "savepoint rolled back")
        await conn.execute(f"DROP TABLE {T}_em")
    finally:
        await conn.close()


async def t_returning():
    conn = await connect()
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {T}_s; CREATE TABLE {T}_s (id serial PRIMARY KEY, name text NOT NULL,"
            " qty int NOT NULL DEFAULT 0 CHECK (qty >= 0))"
        )
        ids = []
        for i in range(5):
            ids.append(await conn.fetchval(f"INSERT INTO {T}_s (name) VALUES ($1) RETURNING id", f"n{i}"))
        eq(ids, [1, 2, 3, 4, 5], "serial ids")
        async with conn.transaction():
            r = await conn.fetchrow(f"INSERT INTO {T}_s (name, qty) VALUES ($1, $2) RETURNING id, name, qty", "tx", 3)
            eq(tuple(r), (6, "tx", 3), "RETURNING in transaction")
            r = await conn.fetch(f"UPDATE {T}_s SET qty = qty + $1 WHERE id <= $2 RETURNING id", 10, 2)
            eq(sorted(x[0] for x in r), [1, 2], "UPDATE RETURNING")
        if hasattr(conn, "fetchmany"):  # asyncpg >= 0.30: executemany returning rows
            rows = await conn.fetchmany(
                f"INSERT INTO {T}_s (name) VALUES ($1) RETURNING id, name", [(f"m{i}",) for i in range(4)]
            )
            eq([tuple(x) for x in rows], [(7 + i, f"m{i}") for i in range(4)], "fetchmany")
        # constraint errors carry their details; the connection stays usable
        try:
            await conn.execute(f"UPDATE {T}_s SET qty = -1 WHERE id = $1", 1)
            raise AssertionError("no check violation")
        except asyncpg.exceptions.CheckViolationError as e:
            eq(e.table_name, f"{T}_s", "table_name")
        try:
            await conn.execute(f"INSERT INTO {T}_s (name) VALUES ($1)", None)
            raise AssertionError("no not-null violation")
        except asyncpg.exceptions.NotNullViolationError as e:
            eq(e.column_name, "name", "column_name")
        try:
            await conn.execute("DO $$ BEGIN RAISE EXCEPTION 'custom %', 42 USING ERRCODE = 'P1234', HINT = 'h'; END $$")
            raise AssertionError("no custom error")
        except asyncpg.PostgresError as e:
            eq((e.sqlstate, e.message, e.hint), ("P1234", "custom 42", "h"), "custom error")
        eq(await conn.fetchval(f"SELECT max(id) FROM {T}_s"), 10 if hasattr(conn, "fetchmany") else 6, "max id")
        await conn.execute(f"DROP TABLE {T}_s")
    finally:
        await conn.close()


async def t_notices():
    conn = await connect()
    try:
        got = []
        conn.add_log_listener(lambda c, msg: got.append((msg.severity, msg.message)))
        await conn.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 1; RAISE WARNING 'careful'; END $$")
        async with conn.transaction():
            await conn.fetchval("SELECT 1")
            await conn.execute("DO $$ BEGIN RAISE NOTICE 'in tx'; END $$")
        await conn.fetchval("SELECT 2")
        eq(got, [("NOTICE", "hello 1"), ("WARNING", "careful"), ("NOTICE", "in tx")], "notices")
    finally:
        await conn.close()


async def t_nested_savepoints():
    conn = await connect()
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}_sp; CREATE TABLE {T}_sp (a int PRIMARY KEY)")
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 1)
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 2)
                try:
                    async with conn.transaction():
                        await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 3)
                        await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 1)  # duplicate key
                except asyncpg.exceptions.UniqueViolationError:
                    pass
                # the server error rolled back only the innermost savepoint
                eq(await conn.fetchval(f"SELECT array_agg(a ORDER BY a) FROM {T}_sp"), [1, 2], "after inner error")
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 4)
            try:
                async with conn.transaction():
                    await conn.fetchval("SELECT 1 / $1::int", 0)
            except asyncpg.exceptions.DivisionByZeroError:
                pass
            await conn.execute(f"INSERT INTO {T}_sp VALUES ($1)", 5)
        eq(await conn.fetchval(f"SELECT array_agg(a ORDER BY a) FROM {T}_sp"), [1, 2, 4, 5], "committed")
        await conn.execute(f"DROP TABLE {T}_sp")
    finally:
        await conn.close()


async def t_pool():
    async def init(c):
        await c.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

    pool = await asyncpg.create_pool(
        host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB, timeout=10,
        min_size=1, max_size=2 if TARGET == "session" else 5, init=init,
    )
    try:
        async with pool.acquire() as c:
            await c.execute(f"DROP TABLE IF EXISTS {T}_p; CREATE TABLE {T}_p (k int PRIMARY KEY, doc jsonb)")

        async def task(k):
            async with pool.acquire() as c:
                async with c.transaction():
                    await c.execute(f"INSERT INTO {T}_p VALUES ($1, $2)", k, {"k": k, "tags": ["a", str(k)]})
                    doc = await c.fetchval(f"SELECT doc FROM {T}_p WHERE k = $1", k)
                    if doc != {"k": k, "tags": ["a", str(k)]}:
                        raise AssertionError(f"task {k}: {doc!r}")
            eq(await pool.fetchval("SELECT $1::int * 2", k), k * 2, f"pool.fetchval {k}")

        res = await asyncio.gather(*(task(k) for k in range(40)), return_exceptions=True)
        errs = [f"task {k}: {type(e).__name__}: {e}" for k, e in enumerate(res) if isinstance(e, BaseException)]
        if errs:
            raise AssertionError("; ".join(errs[:5]))
        eq(await pool.fetchval(f"SELECT count(*) FROM {T}_p"), 40, "rows")
        # a connection released with SET state: the pool's reset (RESET ALL etc.) clears it
        async with pool.acquire() as c:
            await c.execute("SET application_name = 'dirty'")
        for _ in range(4):
            async with pool.acquire() as c:
                assert await c.fetchval("SHOW application_name") != "dirty", "session state leaked through the pool"
        await pool.execute(f"DROP TABLE {T}_p")
    finally:
        await asyncio.wait_for(pool.close(), 20)


async def t_no_stmt_cache():
    # statement_cache_size=0, the setting usually recommended behind a pooler: unnamed statements,
    # each Parse/Describe in one request and Bind/Execute in the next
    conn = await connect(statement_cache_size=0)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {T}_nc; CREATE TABLE {T}_nc (a int PRIMARY KEY, b text)")
        await conn.execute(f"DROP TYPE IF EXISTS {T}_color; CREATE TYPE {T}_color AS ENUM ('red', 'green')")
        for i in range(10):
            eq(tuple(await conn.fetchrow("SELECT $1::int + 1, $2::text", i, "x")), (i + 1, "x"), f"fetchrow {i}")
            eq(await conn.fetchval(f"SELECT $1::{T}_color", "green"), "green", f"enum {i}")
        await conn.executemany(f"INSERT INTO {T}_nc VALUES ($1, $2)", [(i, str(i)) for i in range(300)])
        async with conn.transaction():
            n = 0
            async for r in conn.cursor(f"SELECT a FROM {T}_nc WHERE a >= $1 ORDER BY a", 100, prefetch=16):
                eq(r[0], 100 + n, "cursor row")
                n += 1
                if n % 50 == 0:
                    await conn.execute(f"UPDATE {T}_nc SET b = 'seen' WHERE a = $1", r[0])
            eq(n, 200, "cursor rows")
        eq(await conn.fetchval(f"SELECT count(*) FROM {T}_nc WHERE b = 'seen'"), 4, "updates")
        st = await conn.prepare("SELECT $1::int * 3")
        for i in range(5):
            async with conn.transaction():
                eq(await st.fetchval(i), 3 * i, f"prepared {i}")
        try:
            await conn.fetchval("SELECT 1 / $1::int", 0)
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        eq(await conn.fetchval("SELECT $1::text", "ok"), "ok", "after error")
        await conn.execute(f"DROP TABLE {T}_nc; DROP TYPE {T}_color")
    finally:
        await conn.close()


async def t_big_results():
    conn = await connect()
    try:
        big = "x" * (16 * 1024 * 1024)
        eq(len(await conn.fetchval("SELECT repeat('x', $1::int)", len(big))), len(big), "16 MB value")
        eq(await conn.fetchval("SELECT length($1::text)", big), len(big), "16 MB parameter")
        rows = await conn.fetch("SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
        eq((len(rows), rows[-1][0]), (200000, 200000), "200000 rows")
        # an error after many rows were sent
        try:
            await conn.fetch("SELECT 1 / (100000 - g) FROM generate_series(1, 200000) g")
            raise AssertionError("no error")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        # the same in COPY out
        out = io.BytesIO()
        try:
            await conn.copy_from_query("SELECT g, 1 / (50000 - g) FROM generate_series(1, 100000) g", output=out)
            raise AssertionError("no error in COPY out")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
        eq(await conn.fetchval("SELECT $1::int", 5), 5, "usable after errors")
        # COPY out with arguments, inside a transaction, followed by a cursor
        async with conn.transaction():
            out = io.BytesIO()
            await conn.copy_from_query("SELECT g FROM generate_series(1, $1::int) g", 10, output=out)
            eq(out.getvalue(), b"".join(b"%d\n" % g for g in range(1, 11)), "copy_from_query with args")
            cur = await conn.cursor("SELECT generate_series(1, 10)")
            eq(len(await cur.fetch(4)), 4, "cursor after COPY")
    finally:
        await conn.close()


async def t_copy_serial():
    conn = await connect()
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS {T}_cs; CREATE TABLE {T}_cs (id bigserial PRIMARY KEY, name text, at date)"
        )
        # columns listed, the serial one included: fine everywhere
        await conn.copy_records_to_table(
            f"{T}_cs", records=[(i, f"n{i}", dt.date(2020, 1, 1 + i)) for i in range(1, 21)],
            columns=["id", "name", "at"],
        )
        await conn.execute(f"SELECT setval('{T}_cs_id_seq', 20)")
        eq(await conn.fetchval(f"INSERT INTO {T}_cs (name) VALUES ($1) RETURNING id", "next"), 21, "serial after COPY")
        if TARGET in ("replicated", "sharded"):
            # docs/REPLICATION.md, Limits: a COPY whose column list leaves out a serial column
            # is refused (0A000) where it is written on several nodes: a replicated shard, and
            # on the sharded target too, where these shared tables are written on every shard
            try:
                await conn.copy_records_to_table(f"{T}_cs", records=[("auto", None)], columns=["name", "at"])
            except asyncpg.exceptions.FeatureNotSupportedError:
                pass
            else:
                raise AssertionError("COPY leaving out a serial column was accepted")
        else:
            await conn.copy_records_to_table(f"{T}_cs", records=[("auto", None)], columns=["name", "at"])
            eq(await conn.fetchval(f"SELECT id FROM {T}_cs WHERE name = 'auto'"), 22, "serial filled by COPY")
        await conn.execute(f"DROP TABLE {T}_cs")
    finally:
        await conn.close()


SH = "drv_contacts"  # sharded by user_id on the sharded target (scripts/test-drivers)
SH_LO = 80_000_000_000 + (os.getpid() % 4_000_000) * 100  # asyncpg's band: 8e10..
SH_USERS = 16


async def t_sh_executemany():
    """The sharded target: executemany with rows of every user (one request of Bind/Execute
    per row, one Sync), run by pgproxy shard by shard in one transaction; a duplicate in the
    last row leaves nothing; fetchval of a merged read (an Execute with a row limit)."""
    conn = await connect()
    users = list(range(SH_LO, SH_LO + SH_USERS))
    band = f"user_id BETWEEN {SH_LO} AND {SH_LO + SH_USERS - 1}"
    q = f"INSERT INTO {SH} (id, user_id, name, n) VALUES ($1, $2, $3, $4)"
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {SH} (id bigint, user_id bigint NOT NULL, "
                           "name text, n int, PRIMARY KEY (user_id, id))")
        await conn.execute(f"DELETE FROM {SH} WHERE {band}")
        await conn.executemany(q, [(1, u, "em", 1) for u in users])
        eq(await conn.fetchval(f"SELECT count(*) FROM {SH} WHERE {band}"), SH_USERS, "executemany")
        try:
            await conn.executemany(q, [(2, u, "em", 2) for u in users] + [(1, users[0], "dup", 0)])
        except asyncpg.exceptions.UniqueViolationError:
            pass
        else:
            raise AssertionError("duplicate not reported")
        eq(await conn.fetchval(f"SELECT count(*) FROM {SH} WHERE {band}"), SH_USERS, "atomic")
        async with conn.transaction():
            eq(await conn.fetchval(f"SELECT count(*) FROM {SH} WHERE {band}"), SH_USERS,
               "merged read in a transaction that has not written")
            await conn.executemany(q, [(3, u, "tx", 3) for u in users])
        eq(await conn.fetchval(f"SELECT count(*) FROM {SH} WHERE {band}"), 2 * SH_USERS, "committed")
        row = await conn.fetchrow(f"SELECT user_id, id FROM {SH} WHERE {band} ORDER BY user_id, id")
        eq(tuple(row), (SH_LO, 1), "fetchrow of a merged read")
        # copy_records_to_table (binary COPY): each row to its user's shard, all or nothing
        res = await conn.copy_records_to_table(
            SH, records=[(4, u, "copied", 4) for u in users], columns=["id", "user_id", "name", "n"])
        eq(res, f"COPY {SH_USERS}", "copy_records_to_table")
        for u in users:
            eq(await conn.fetchval(f"SELECT name FROM {SH} WHERE user_id = $1 AND id = 4", u),
               "copied", f"copied row of user {u}")
        try:
            await conn.copy_records_to_table(
                SH, records=[(5, u, "new", 5) for u in users] + [(4, users[-1], "dup", 0)],
                columns=["id", "user_id", "name", "n"])
        except asyncpg.exceptions.UniqueViolationError:
            pass
        else:
            raise AssertionError("duplicate in a COPY not reported")
        eq(await conn.fetchval(f"SELECT count(*) FROM {SH} WHERE {band}"), 3 * SH_USERS, "COPY atomic")
        # copy_from_table: every shard's rows put together
        out = io.BytesIO()
        await conn.copy_from_table(SH, output=out, columns=["user_id", "id"])
        mine = [ln for ln in out.getvalue().decode().splitlines()
                if SH_LO <= int(ln.split("\t")[0]) < SH_LO + SH_USERS and ln.split("\t")[1] == "4"]
        eq(len(mine), SH_USERS, "copy_from_table of the sharded table")
        await conn.execute(f"DELETE FROM {SH} WHERE {band}")
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
    await C.arun("two cursors interleaved with writes, prepared cursors", t_cursor_interleaved)
    await C.arun("executemany: 3000 rows, atomic on error, in a savepoint", t_executemany_big)
    await C.arun("serial + RETURNING, constraint error details", t_returning)
    await C.arun("notices (add_log_listener)", t_notices)
    await C.arun("nested transactions (savepoints) with server errors", t_nested_savepoints)
    await C.arun("Pool: 40 tasks, init codec, reset on release", t_pool, timeout=120)
    await C.arun("statement_cache_size=0 (unnamed statements)", t_no_stmt_cache)
    await C.arun("big values, 200000 rows, errors mid-result and mid-COPY", t_big_results, timeout=120)
    await C.arun("COPY into a table with a serial column", t_copy_serial)
    if TARGET == "sharded":
        await C.arun("sharded table: executemany across users, fetchval/fetchrow merged, "
                     "copy_records_to_table, copy_from_table", t_sh_executemany)
    await C.arun("cleanup", t_cleanup)


asyncio.run(main())
C.finish()
