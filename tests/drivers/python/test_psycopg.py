"""psycopg 3 through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

Prints one PASS/FAIL line per check; exits 1 if any check failed.
Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
"""

import datetime as dt
import decimal
import os
import threading
import time
import uuid

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Json, Jsonb

from common import DB, HOST, PASSWORD, PORT, TAG, TARGET, USER, Checks, eq

C = Checks("psycopg")
T = f"drv_psycopg_{TAG}"  # this run's table


def connect(**kw):
    return psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB, connect_timeout=10, **kw
    )


def t_connect():
    with connect() as conn:
        eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE, "status")
        v = conn.info.server_version
        assert v >= 100000, f"server_version {v}"
        eq(conn.execute("SELECT current_user").fetchone()[0], USER, "current_user")
        # psycopg relies on these ParameterStatus values
        eq(conn.info.parameter_status("client_encoding"), "UTF8", "client_encoding")
        assert conn.info.parameter_status("server_version"), "no server_version ParameterStatus"
        assert conn.info.parameter_status("integer_datetimes") == "on", "integer_datetimes"


def t_simple():
    with connect(autocommit=True) as conn:
        eq(conn.execute("SELECT 1").fetchone(), (1,), "select 1")
        # several statements in one simple Query: psycopg returns the last result
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {T}; CREATE TABLE {T} (id int PRIMARY KEY, v text)")
        cur.execute(f"INSERT INTO {T} VALUES (1, 'a'), (2, 'b')")
        eq(cur.rowcount, 2, "rowcount")
        cur.execute(f"SELECT id, v FROM {T} ORDER BY id")
        eq(cur.fetchall(), [(1, "a"), (2, "b")], "rows")
        eq(cur.description[1].name, "v", "column name")
        # empty query, a query without rows
        cur.execute(f"SELECT * FROM {T} WHERE false")
        eq(cur.fetchall(), [], "no rows")


def t_types():
    vals = {
        "i": 42,
        "b": 2**40 + 7,
        "t": "héllo ☃ 'quote'",
        "by": b"\x00\x01\xffbinary",
        "n": decimal.Decimal("12345678901234567890.123456789"),
        "ts": dt.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=dt.timezone.utc),
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "j": {"a": [1, 2, {"b": None}], "c": "d"},
        "arr": [1, 2, 3],
        "tarr": ["x", None, "z"],
        "null": None,
        "f": 1.5,
        "bo": True,
        "d": dt.date(1999, 12, 31),
    }
    q = (
        "SELECT %(i)s::int, %(b)s::bigint, %(t)s::text, %(by)s::bytea, %(n)s::numeric,"
        " %(ts)s::timestamptz, %(u)s::uuid, %(j)s::json, %(jb)s::jsonb, %(arr)s::int[],"
        " %(tarr)s::text[], %(null)s::text, %(f)s::float8, %(bo)s::bool, %(d)s::date"
    )
    params = dict(vals, j=Json(vals["j"]), jb=Jsonb(vals["j"]))
    with connect() as conn:
        for binary in (False, True):
            row = conn.cursor(binary=binary).execute(q, params).fetchone()
            exp = (
                vals["i"], vals["b"], vals["t"], vals["by"], vals["n"], vals["ts"], vals["u"],
                vals["j"], vals["j"], vals["arr"], vals["tarr"], None, vals["f"], vals["bo"],
                vals["d"],
            )
            for k, (a, e) in enumerate(zip(row, exp)):
                eq(a, e, f"column {k} (binary={binary})")
        # bytea and a large text round trip (several protocol frames worth)
        big = "x" * 300_000
        eq(conn.execute("SELECT length(%s::text)", (big,)).fetchone()[0], 300_000, "big text")
        blob = bytes(range(256)) * 1000
        eq(conn.execute("SELECT %s::bytea", (blob,)).fetchone()[0], blob, "big bytea")
        conn.rollback()


def t_prepared():
    # prepare_threshold defaults to 5: the 6th execution onwards uses a named server statement
    with connect(autocommit=True) as conn:
        eq(conn.prepare_threshold, 5, "prepare_threshold default")
        for i in range(20):
            r = conn.execute("SELECT %s::int * 2, %s::text || 'x'", (i, str(i))).fetchone()
            eq(r, (i * 2, f"{i}x"), f"iteration {i}")
        assert len(conn._prepared._names) > 0, "psycopg prepared nothing"
        # prepare=True prepares at once; inside transactions too
        for i in range(12):
            with conn.transaction():
                r = conn.execute("SELECT %s::bigint + 1", (i,), prepare=True).fetchone()
                eq(r, (i + 1,), f"prepared in transaction {i}")
        # a statement prepared while a row-returning cursor is open
        cur = conn.cursor()
        for i in range(10):
            cur.execute("SELECT generate_series(1, %s::int)", (i + 1,), prepare=True)
            eq(len(cur.fetchall()), i + 1, f"series {i}")
        # executemany (pipelined Bind/Execute when libpq >= 14)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {T}_m (a int, b text)")
        cur.executemany(f"INSERT INTO {T}_m VALUES (%s, %s)", [(i, f"r{i}") for i in range(50)])
        eq(conn.execute(f"SELECT count(*), sum(a) FROM {T}_m").fetchone(), (50, 1225), "executemany")
        # DEALLOCATE ALL / DISCARD ALL from the client: psycopg forgets its statements
        conn.execute("DEALLOCATE ALL")
        for i in range(8):
            eq(conn.execute("SELECT %s::int * 2, %s::text || 'x'", (i, "y")).fetchone(),
               (i * 2, "yx"), f"after DEALLOCATE ALL {i}")
        conn.execute(f"DROP TABLE {T}_m")


def t_transactions():
    with connect() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {T}_tx (a int)")
        conn.commit()
        conn.execute(f"INSERT INTO {T}_tx VALUES (1)")
        eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS, "in transaction")
        conn.commit()
        conn.execute(f"INSERT INTO {T}_tx VALUES (2)")
        conn.rollback()
        eq(conn.execute(f"SELECT array_agg(a) FROM {T}_tx").fetchone()[0], [1], "after rollback")
        conn.rollback()
        # the context manager form, with a savepoint inside
        conn.autocommit = True
        with conn.transaction():
            conn.execute(f"INSERT INTO {T}_tx VALUES (3)")
            try:
                with conn.transaction():
                    conn.execute(f"INSERT INTO {T}_tx VALUES (4)")
                    raise RuntimeError("roll back the savepoint")
            except RuntimeError:
                pass
        eq(conn.execute(f"SELECT array_agg(a ORDER BY a) FROM {T}_tx").fetchone()[0], [1, 3],
           "savepoint rolled back")
        conn.execute(f"DROP TABLE {T}_tx")


def t_error_in_tx():
    with connect() as conn:
        conn.execute("SELECT 1")
        try:
            conn.execute("SELECT 1/0")
            raise AssertionError("no error for 1/0")
        except errors.DivisionByZero:
            pass
        eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR, "status INERROR")
        try:
            conn.execute("SELECT 1")
            raise AssertionError("statement ran in an aborted transaction")
        except errors.InFailedSqlTransaction:
            pass
        conn.rollback()
        eq(conn.execute("SELECT 2").fetchone(), (2,), "after rollback")
        # an error in a prepared statement (extended protocol) then more prepared statements
        conn.rollback()
        conn.autocommit = True
        for i in range(8):
            try:
                conn.execute("SELECT 10 / %s::int", (0 if i % 2 else 5,), prepare=True)
                assert i % 2 == 0, "no error for 10/0"
            except errors.DivisionByZero:
                assert i % 2 == 1
        eq(conn.execute("SELECT 10 / %s::int", (2,)).fetchone(), (5,), "after errors")
        # an error at Parse time (unknown table), then the connection is fine
        try:
            conn.execute("SELECT * FROM no_such_table_xyz WHERE a = %s", (1,))
        except errors.UndefinedTable:
            pass
        eq(conn.execute("SELECT 3").fetchone(), (3,), "after parse error")


def t_copy():
    with connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {T}_c")
        conn.execute(f"CREATE TABLE {T}_c (a int, b text, c bytea)")
        cur = conn.cursor()
        n = 5000
        with cur.copy(f"COPY {T}_c (a, b, c) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i, f"row {i}\ttab", bytes([i % 256])))
        eq(conn.execute(f"SELECT count(*), sum(a) FROM {T}_c").fetchone(),
           (n, n * (n - 1) // 2), "copy in")
        # binary COPY in
        with cur.copy(f"COPY {T}_c (a, b) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            for i in range(1, 101):
                copy.write_row((-i, "bin"))
        eq(conn.execute(f"SELECT count(*) FROM {T}_c WHERE b = 'bin'").fetchone(), (100,), "binary copy")
        # COPY out
        rows = []
        with cur.copy(f"COPY (SELECT a, b FROM {T}_c WHERE a >= 0 ORDER BY a) TO STDOUT") as copy:
            for row in copy.rows():
                rows.append(row)
        eq(len(rows), n, "copy out rows")
        eq(rows[7], ("7", "row 7\ttab"), "copy out row 7")
        # an error during COPY in: the connection is usable afterwards
        try:
            with cur.copy(f"COPY {T}_c (a) FROM STDIN") as copy:
                copy.write("1\nnot-a-number\n")
            raise AssertionError("no error for bad COPY data")
        except errors.InvalidTextRepresentation:
            pass
        # the client aborts a COPY (CopyFail)
        try:
            with cur.copy(f"COPY {T}_c (a) FROM STDIN") as copy:
                copy.write("1\n")
                raise RuntimeError("abort copy")
        except RuntimeError:
            pass
        except errors.QueryCanceled:
            pass
        eq(conn.execute(f"SELECT count(*) FROM {T}_c").fetchone(), (n + 100,), "after failed copies")
        # COPY in inside a transaction, rolled back
        with conn.transaction(force_rollback=True):
            with cur.copy(f"COPY {T}_c (a) FROM STDIN") as copy:
                copy.write_row((1,))
        eq(conn.execute(f"SELECT count(*) FROM {T}_c").fetchone(), (n + 100,), "rolled back copy")
        conn.execute(f"DROP TABLE {T}_c")


def t_listen_notify():
    chan = f"chan_{TAG}"
    with connect(autocommit=True) as listener, connect(autocommit=True) as notifier:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(chan)))
        notifier.execute("SELECT pg_notify(%s, %s)", (chan, "hello"))
        notifier.execute(sql.SQL("NOTIFY {}, 'second'").format(sql.Identifier(chan)))
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            for n in listener.notifies(timeout=1, stop_after=2 - len(got)):
                got.append((n.channel, n.payload))
        eq(got, [(chan, "hello"), (chan, "second")], "notifications")
        # a notification arriving while the listener runs queries
        notifier.execute("SELECT pg_notify(%s, 'third')", (chan,))
        time.sleep(0.2)
        listener.execute("SELECT 1")
        got2 = list(listener.notifies(timeout=2, stop_after=1))
        eq([n.payload for n in got2], ["third"], "notification during query")
        listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(chan)))
        # after UNLISTEN nothing arrives
        notifier.execute("SELECT pg_notify(%s, 'late')", (chan,))
        eq(list(listener.notifies(timeout=0.5)), [], "after UNLISTEN")


def t_settings():
    # SET outside a transaction must follow the client in transaction mode
    with connect(autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Tokyo'")
        conn.execute("SET application_name = 'psycopg-drv'")
        conn.execute("SET search_path = pg_catalog, public")
        for i in range(6):
            with conn.transaction():
                eq(conn.execute("SHOW TimeZone").fetchone()[0], "Asia/Tokyo", f"TimeZone {i}")
                eq(conn.execute("SELECT current_setting('application_name')").fetchone()[0],
                   "psycopg-drv", f"application_name {i}")
            r = conn.execute("SELECT '2024-01-01 00:00:00+00'::timestamptz").fetchone()[0]
            eq(r.utcoffset(), dt.timedelta(hours=9), "timestamptz offset")
        eq(conn.info.parameter_status("TimeZone"), "Asia/Tokyo", "ParameterStatus TimeZone")
        conn.execute("RESET ALL")
        eq(conn.execute("SHOW application_name").fetchone()[0], "", "after RESET ALL")


def t_concurrency():
    n_threads, n_iter = 12, 25
    errs = []

    def worker(k):
        try:
            with connect(autocommit=True) as conn:
                for i in range(n_iter):
                    v = k * 1000 + i
                    r = conn.execute("SELECT %s::int + 1, %s::text", (v, f"w{k}"),
                                     prepare=True).fetchone()
                    if r != (v + 1, f"w{k}"):
                        raise AssertionError(f"worker {k} iteration {i}: got {r}")
                    if i % 5 == 0:
                        with conn.transaction():
                            r2 = conn.execute("SELECT %s::bigint * 3", (v,)).fetchone()
                            if r2 != (v * 3,):
                                raise AssertionError(f"worker {k} tx {i}: got {r2}")
        except Exception as e:  # noqa: BLE001
            errs.append(f"worker {k}: {type(e).__name__}: {e}")

    ths = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(90)
    if any(t.is_alive() for t in ths):
        errs.append("a worker hung")
    if errs:
        raise AssertionError("; ".join(errs[:5]))


def t_named_cursor():
    with connect() as conn:
        with conn.transaction():
            cur = conn.cursor(f"cur_{TAG}")
            cur.itersize = 7
            cur.execute("SELECT g, g::text FROM generate_series(1, 100) g WHERE g > %s", (0,))
            first = cur.fetchmany(10)
            eq(first[0], (1, "1"), "first row")
            # another statement between fetches on the same connection
            eq(conn.execute("SELECT 'between'").fetchone(), ("between",), "query between fetches")
            rest = list(cur)
            eq(len(first) + len(rest), 100, "total rows")
            cur.close()
        # scrollable cursor
        with conn.transaction():
            cur = conn.cursor(f"scur_{TAG}", scrollable=True)
            cur.execute("SELECT generate_series(1, 10)")
            cur.scroll(5, mode="absolute")
            eq(cur.fetchone(), (6,), "scroll")
            cur.close()
        # client-side "stream" (single-row mode)
        n = sum(1 for _ in conn.cursor().stream("SELECT generate_series(1, 1000)"))
        eq(n, 1000, "stream")
        conn.rollback()


def t_pipeline():
    with connect(autocommit=True) as conn:
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
            with conn.transaction():
                c2 = conn.execute("SELECT 'in pipeline tx'")
        eq([c.fetchone()[0] for c in curs], list(range(20)), "pipelined results")
        eq(c2.fetchone(), ("in pipeline tx",), "pipelined tx")
        # an error inside a pipeline, then it recovers
        try:
            with conn.pipeline():
                conn.execute("SELECT 1")
                conn.execute("SELECT 1/0")
                conn.execute("SELECT 2")
        except errors.DivisionByZero:
            pass
        eq(conn.execute("SELECT 4").fetchone(), (4,), "after pipeline error")


def t_pipeline_error_first():
    """An extended-protocol batch whose error reaches the proxy before the rest of the batch and
    its Sync: PostgreSQL skips everything up to the Sync and answers it with one ReadyForQuery.
    Deterministic (libpq pipeline mode with a Flush and a pause), unlike t_pipeline's error case."""
    import select

    with connect(autocommit=True) as conn:
        c = conn.pgconn
        c.enter_pipeline_mode()
        c.send_query_params(b"SELECT 1/0", None)  # Parse, Bind, Describe, Execute
        c.send_flush_request()  # Flush, no Sync yet
        c.flush()
        time.sleep(0.5)  # the ErrorResponse reaches the proxy now
        c.send_query_params(b"SELECT 2", None)  # skipped by the server: still before the Sync
        c.pipeline_sync()
        c.flush()
        got = []
        deadline = time.monotonic() + 10
        while "PIPELINE_SYNC" not in got and time.monotonic() < deadline:
            select.select([c.socket], [], [], 0.5)
            c.consume_input()
            while not c.is_busy():
                r = c.get_result()
                if r is None:
                    break
                got.append(psycopg.pq.ExecStatus(r.status).name)
        eq(got, ["FATAL_ERROR", "PIPELINE_ABORTED", "PIPELINE_SYNC"], "results")
        c.exit_pipeline_mode()
        eq(conn.execute("SELECT 3").fetchone(), (3,), "after the batch")


def t_cancel():
    with connect(autocommit=True) as conn:
        def cancel_later():
            time.sleep(0.5)
            conn.cancel()

        th = threading.Thread(target=cancel_later)
        th.start()
        t0 = time.monotonic()
        try:
            conn.execute("SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep was not cancelled")
        except errors.QueryCanceled:
            pass
        th.join()
        took = time.monotonic() - t0
        assert took < 10, f"cancel took {took:.1f}s"
        eq(conn.execute("SELECT 'alive'").fetchone(), ("alive",), "usable after cancel")
        # cancel inside a transaction: transaction aborted, rollback, continue
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            th = threading.Thread(target=cancel_later)
            th.start()
            try:
                cur.execute("SELECT pg_sleep(20)")
                raise AssertionError("pg_sleep in transaction was not cancelled")
            except errors.QueryCanceled:
                pass
            th.join()
            cur.execute("ROLLBACK")
            eq(cur.execute("SELECT 5").fetchone(), (5,), "usable after cancel in tx")
        # statement_timeout (server side) also works
        conn.execute("SET statement_timeout = '300ms'")
        try:
            conn.execute("SELECT pg_sleep(5)")
            raise AssertionError("statement_timeout did not fire")
        except errors.QueryCanceled:
            pass
        conn.execute("RESET statement_timeout")
        eq(conn.execute("SELECT 6").fetchone(), (6,), "after statement_timeout")


def t_cleanup():
    with connect(autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {T}")


# ------------------------------------------------------------------ sharded table (sharded target)
# drv_contacts is sharded by user_id (hash, two shards: scripts/test-drivers). The table is shared
# by every driver run, so this run uses its own key range [SH_LO, SH_LO + SH_USERS) and deletes its
# rows at the start and the end. Expected answers are computed here from what was inserted (what
# one PostgreSQL holding all the rows would answer).
SH = "drv_contacts"
SH_USERS = 20
# keys above 2**31: psycopg sends them as int8 (binary); below, as int2 / int4 (t_sh_int4_key)
SH_LO = 10_000_000_000 + (os.getpid() % 4_000_000) * 100  # psycopg's band: 1e10..; pgjdbc 2e10, node 3e10
SH_SMALL = 1_000_000_000 + (os.getpid() % 4_000_000) * 100  # int4 keys: psycopg 1e9.., pgjdbc 1.5e9..
SH_HI = SH_LO + SH_USERS - 1
SH_RANGE = f"user_id BETWEEN {SH_LO} AND {SH_HI}"
sh_rows = {}  # (user_id, id) -> (name, n): the model of this run's rows
sh_port = {}  # user_id -> name of the shard that holds it (s0, s1)


def sh_expect_rows():
    return sorted((u, i, nm, n) for (u, i), (nm, n) in sh_rows.items())


def sh_check_all(conn, what):
    """Every row of this run, read without a key (merged across shards), equals the model."""
    got = conn.execute(f"SELECT user_id, id, name, n FROM {SH} WHERE {SH_RANGE} ORDER BY user_id, id").fetchall()
    eq(got, sh_expect_rows(), what)


def sh_refused(conn, query, params=None, what=""):
    try:
        conn.execute(query, params)
    except errors.FeatureNotSupported:
        return
    raise AssertionError(f"{what}: not refused with 0A000: {query}")


def t_sh_setup():
    with connect(autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SH} (id bigint, user_id bigint NOT NULL, name text,"
                     " n int, PRIMARY KEY (user_id, id))")
        conn.execute(f"DELETE FROM {SH} WHERE {SH_RANGE}")  # keyless write: every shard, 2PC
        # inserts with the key as a bind parameter: past prepare_threshold, a named statement
        # that pgproxy routes at each Bind
        for k in range(SH_USERS):
            u = SH_LO + k
            for i in (1, 2, 3):
                cur = conn.execute(f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)",
                                   (i, u, f"c{u}_{i}", k * 10 + i))
                eq(cur.rowcount, 1, f"insert rowcount {u}/{i}")
                sh_rows[(u, i)] = (f"c{u}_{i}", k * 10 + i)
        assert len(conn._prepared._names) > 0, "psycopg prepared nothing"
        # where each user landed: the same read on each shard by name (comment hint)
        for shard in ("s0", "s1"):
            for (u,) in conn.execute(f"/* pgproxy: shard={shard} */ SELECT user_id FROM {SH}"
                                     f" WHERE {SH_RANGE} AND id = 1").fetchall():
                assert u not in sh_port, f"user {u} on both shards"
                sh_port[u] = shard
        eq(sorted(sh_port), list(range(SH_LO, SH_HI + 1)), "users")
        eq(len(set(sh_port.values())), 2, f"both shards hold rows of this run ({sh_port})")
        sh_check_all(conn, "all rows")


def t_sh_copy():
    """cursor.copy() into the sharded table: text rows and binary rows, each to its user's
    shard, inside psycopg's transaction and in autocommit; a duplicate writes nothing."""
    users = list(range(SH_LO, SH_HI + 1))
    with connect() as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {SH} (id, user_id, name, n) FROM STDIN") as cp:
                for u in users:
                    cp.write_row((4, u, f"copied {u}", 4))
            eq(cur.rowcount, SH_USERS, "COPY rowcount")
        conn.commit()
        for u in users:
            sh_rows[(u, 4)] = (f"copied {u}", 4)
    with connect(autocommit=True) as conn:
        with conn.cursor(binary=True) as cur:
            with cur.copy(f"COPY {SH} (id, user_id, name, n) FROM STDIN (FORMAT binary)") as cp:
                cp.set_types(["int8", "int8", "text", "int4"])
                for u in users:
                    cp.write_row((5, u, "bin", 5))
        for u in users:
            sh_rows[(u, 5)] = ("bin", 5)
        for shard in ("s0", "s1"):
            for (u,) in conn.execute(f"/* pgproxy: shard={shard} */ SELECT user_id FROM {SH}"
                                     f" WHERE {SH_RANGE} AND id IN (4, 5)").fetchall():
                eq(sh_port[u], shard, f"copied rows of user {u}")
        try:
            with conn.cursor().copy(f"COPY {SH} (id, user_id, name, n) FROM STDIN") as cp:
                for u in users:
                    cp.write_row((6, u, "new", 6))
                cp.write_row((4, users[-1], "dup", 0))
        except errors.UniqueViolation:
            pass
        else:
            raise AssertionError("duplicate in a COPY not reported")
        sh_check_all(conn, "after COPY")


def t_sh_point_reads():
    with connect(autocommit=True) as conn:
        for rnd in range(2):
            for k in range(SH_USERS):
                u = SH_LO + k
                got = conn.execute(f"SELECT id, name, n FROM {SH} WHERE user_id = %s ORDER BY id",
                                   (u,)).fetchall()
                eq(got, [(i, *sh_rows[(u, i)]) for i in (1, 2, 3)], f"user {u} round {rnd}")
                # the same key inside the statement's own IN list and as a literal
                eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id IN (%s, %s) AND id = %s",
                                (u, u + 1 if k + 1 < SH_USERS else u, 2)).fetchone()[0],
                   2 if k + 1 < SH_USERS else 1, f"IN list {u}")
        assert len(conn._prepared._names) >= 2, "point reads not prepared server-side"
        eq(conn.execute(f"SELECT name FROM {SH} WHERE user_id = {SH_LO + 3} AND id = 2").fetchone(),
           (sh_rows[(SH_LO + 3, 2)][0],), "literal key")


def t_sh_update_delete():
    with connect(autocommit=True) as conn:
        for k in range(SH_USERS):
            u = SH_LO + k
            cur = conn.execute(f"UPDATE {SH} SET n = n + 100 WHERE user_id = %s AND id = %s", (u, 1))
            eq(cur.rowcount, 1, f"update rowcount {u}")
            nm, n = sh_rows[(u, 1)]
            sh_rows[(u, 1)] = (nm, n + 100)
            if k % 2 == 0:
                cur = conn.execute(f"DELETE FROM {SH} WHERE user_id = %s AND id = %s", (u, 3))
                eq(cur.rowcount, 1, f"delete rowcount {u}")
                del sh_rows[(u, 3)]
        # UPDATE ... RETURNING by key
        u = SH_LO + 5
        got = conn.execute(f"UPDATE {SH} SET name = name || '!' WHERE user_id = %s RETURNING id, name",
                           (u,)).fetchall()
        for i in (1, 2, 3):
            if (u, i) in sh_rows:
                sh_rows[(u, i)] = (sh_rows[(u, i)][0] + "!", sh_rows[(u, i)][1])
        eq(sorted(got), sorted((i, sh_rows[(u, i)][0]) for (uu, i) in sh_rows if uu == u), "RETURNING")
        sh_check_all(conn, "after updates and deletes")


def sh_two_users():
    """Two users of this run on different shards."""
    a = SH_LO
    b = next(u for u in range(SH_LO, SH_HI + 1) if sh_port[u] != sh_port[a])
    return a, b


def t_sh_tx_one_user():
    u = SH_LO + 7
    with connect() as conn:  # psycopg's default: a transaction opened by the first statement
        conn.execute(f"UPDATE {SH} SET n = n + 1 WHERE user_id = %s AND id = 2", (u,))
        conn.execute(f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)", (10, u, "tx", 7))
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id = %s", (u,)).fetchone()[0],
           sum(1 for (uu, _) in sh_rows if uu == u) + 1, "count inside the transaction")
        conn.commit()
        sh_rows[(u, 2)] = (sh_rows[(u, 2)][0], sh_rows[(u, 2)][1] + 1)
        sh_rows[(u, 10)] = ("tx", 7)
        conn.execute(f"UPDATE {SH} SET n = 0 WHERE user_id = %s", (u,))
        conn.execute(f"DELETE FROM {SH} WHERE user_id = %s AND id = 10", (u,))
        conn.rollback()
        conn.autocommit = True
        sh_check_all(conn, "after commit and rollback")


def t_sh_tx_two_shards():
    a, b = sh_two_users()
    with connect() as conn:
        # commit: two-phase commit across both shards
        conn.execute(f"UPDATE {SH} SET name = 'two-a' WHERE user_id = %s AND id = 1", (a,))
        conn.execute(f"UPDATE {SH} SET name = 'two-b' WHERE user_id = %s AND id = 1", (b,))
        eq(conn.execute(f"SELECT name FROM {SH} WHERE user_id = %s AND id = 1", (a,)).fetchone(),
           ("two-a",), "first shard read again in the transaction")
        conn.commit()
        sh_rows[(a, 1)] = ("two-a", sh_rows[(a, 1)][1])
        sh_rows[(b, 1)] = ("two-b", sh_rows[(b, 1)][1])
        # rollback on both shards
        conn.execute(f"UPDATE {SH} SET n = -1 WHERE user_id = %s", (a,))
        conn.execute(f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)", (11, b, "rb", 1))
        conn.rollback()
        # an error on the second shard aborts the whole transaction
        conn.execute(f"UPDATE {SH} SET n = -2 WHERE user_id = %s", (a,))
        try:
            conn.execute(f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)", (1, b, "dup", 1))
            raise AssertionError("no unique violation")
        except errors.UniqueViolation:
            pass
        conn.rollback()
        conn.autocommit = True
        sh_check_all(conn, "after the two-shard transactions")


def t_sh_executemany():
    """executemany with rows of every user (one pipelined request, one Execute per row): pgproxy
    runs it shard by shard in one transaction; a failing row leaves no row of it anywhere."""
    us = [SH_LO + k for k in range(SH_USERS)]
    q = f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)"
    with connect(autocommit=True) as conn:
        conn.cursor().executemany(q, [(20, u, "em", 20) for u in us])
        for u in us:
            sh_rows[(u, 20)] = ("em", 20)
        sh_check_all(conn, "executemany in autocommit")
        # a duplicate in the last row: nothing of the request is kept, on any shard
        try:
            conn.cursor().executemany(q, [(21, u, "em", 21) for u in us] + [(20, us[0], "dup", 0)])
            raise AssertionError("no unique violation")
        except errors.UniqueViolation:
            pass
        sh_check_all(conn, "executemany rolled back whole")
    with connect() as conn:  # in a transaction, then rolled back, then committed
        conn.cursor().executemany(q, [(22, u, "tx", 22) for u in us])
        conn.rollback()
        conn.cursor().executemany(q, [(23, u, "tx", 23) for u in us])
        conn.commit()
        for u in us:
            sh_rows[(u, 23)] = ("tx", 23)
        conn.autocommit = True
        sh_check_all(conn, "executemany in a transaction")


def t_sh_merged_reads():
    rows = sh_expect_rows()
    with connect(autocommit=True) as conn:
        eq(conn.execute(f"SELECT count(*), sum(n), min(n), max(n) FROM {SH} WHERE {SH_RANGE}").fetchone(),
           (len(rows), sum(r[3] for r in rows), min(r[3] for r in rows), max(r[3] for r in rows)),
           "count, sum, min, max")
        # avg is rewritten to sum / count: same numeric as PostgreSQL's
        avg = conn.execute(f"SELECT avg(n) FROM {SH} WHERE {SH_RANGE}").fetchone()[0]
        exp = decimal.Decimal(sum(r[3] for r in rows)) / len(rows)
        assert abs(avg - exp) < decimal.Decimal("1e-12"), f"avg {avg} != {exp}"
        # the range as parameters, prepared (several executions)
        for i in range(8):
            eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id BETWEEN %s AND %s",
                            (SH_LO + i, SH_HI)).fetchone()[0],
               sum(1 for r in rows if r[0] >= SH_LO + i), f"count from {SH_LO + i}")
        # ORDER BY ... LIMIT / OFFSET: k-way merge
        top = sorted(rows, key=lambda r: (-r[3], r[0], r[1]))
        eq(conn.execute(f"SELECT user_id, id, n FROM {SH} WHERE {SH_RANGE} ORDER BY n DESC, user_id, id"
                        " LIMIT 5").fetchall(), [(r[0], r[1], r[3]) for r in top[:5]], "ORDER BY LIMIT")
        for i in range(7):
            eq(conn.execute(f"SELECT user_id, id FROM {SH} WHERE {SH_RANGE} ORDER BY n DESC, user_id, id"
                            " LIMIT %s OFFSET %s", (3, i)).fetchall(),
               [(r[0], r[1]) for r in top[i:i + 3]], f"LIMIT/OFFSET parameters {i}")
        # ORDER BY a column not in the select list
        eq(conn.execute(f"SELECT id FROM {SH} WHERE {SH_RANGE} ORDER BY user_id DESC, id DESC LIMIT 4").fetchall(),
           [(r[1],) for r in sorted(rows, reverse=True)[:4]], "hidden ORDER BY column")
        # GROUP BY the key with aggregates
        groups = {}
        for u, _, _, n in rows:
            groups.setdefault(u, []).append(n)
        got = conn.execute(f"SELECT user_id, count(*), sum(n), min(n), max(n) FROM {SH} WHERE {SH_RANGE}"
                           " GROUP BY user_id ORDER BY user_id").fetchall()
        eq(got, [(u, len(v), sum(v), min(v), max(v)) for u, v in sorted(groups.items())], "GROUP BY user_id")
        got = conn.execute(f"SELECT user_id, avg(n) FROM {SH} WHERE {SH_RANGE} GROUP BY user_id"
                           " ORDER BY user_id").fetchall()
        for (u, a), (eu, v) in zip(got, sorted(groups.items())):
            eq(u, eu, "GROUP BY avg user")
            assert abs(a - decimal.Decimal(sum(v)) / len(v)) < decimal.Decimal("1e-12"), f"avg {u}: {a}"
        # GROUP BY another column, DISTINCT
        by_id = {}
        for _, i, _, n in rows:
            by_id[i] = by_id.get(i, 0) + n
        eq(conn.execute(f"SELECT id, sum(n) FROM {SH} WHERE {SH_RANGE} GROUP BY id ORDER BY id").fetchall(),
           sorted(by_id.items()), "GROUP BY id")
        eq(conn.execute(f"SELECT DISTINCT id FROM {SH} WHERE {SH_RANGE} ORDER BY id").fetchall(),
           [(i,) for i in sorted(by_id)], "DISTINCT")
        # a keyless read inside psycopg's default transaction (READ COMMITTED): merged, and
        # after a write it sees the write, as on one PostgreSQL; rolled back, it is gone
        conn.autocommit = False
        conn.execute(f"SELECT name FROM {SH} WHERE user_id = %s AND id = 2", (SH_LO,))
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE {SH_RANGE}").fetchone()[0], len(rows),
           "merged read in a transaction")
        conn.execute(f"UPDATE {SH} SET n = n + 1000 WHERE user_id = %s AND id = 2", (SH_LO,))
        eq(conn.execute(f"SELECT sum(n) FROM {SH} WHERE {SH_RANGE}").fetchone()[0],
           sum(r[3] for r in rows) + 1000, "fan-out read after a write sees it")
        conn.rollback()
        conn.autocommit = True
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE {SH_RANGE}").fetchone()[0], len(rows), "after it")


def t_sh_hints():
    a, b = sh_two_users()
    on_a = sum(1 for (u, _) in sh_rows if sh_port[u] == sh_port[a])
    total = len(sh_rows)
    with connect(autocommit=True) as conn:
        # a comment hint: the keyless count runs on a's shard only
        eq(conn.execute(f"/* pgproxy: shard_key={a} */ SELECT count(*) FROM {SH} WHERE {SH_RANGE}").fetchone()[0],
           on_a, "comment hint")
        ports = {sh_port[u]: conn.execute(f"/* pgproxy: shard_key={u} */ SELECT inet_server_port()").fetchone()[0]
                 for u in (a, b)}
        assert ports[sh_port[a]] != ports[sh_port[b]], f"comment hint, no table: same node {ports}"
        eq(conn.execute(f"-- pgproxy: shard_key={b}\nSELECT inet_server_port()").fetchone()[0],
           ports[sh_port[b]], "line comment hint")
        # SET pgproxy.shard_key: statements that would need every shard go to a's shard
        conn.execute(f"SET pgproxy.shard_key = {a}")
        for i in range(6):
            eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id BETWEEN %s AND %s",
                            (SH_LO, SH_HI)).fetchone()[0], on_a, f"SET pgproxy.shard_key {i}")
        # a statement with its own key keeps it
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id = %s", (b,)).fetchone()[0],
           sum(1 for (u, _) in sh_rows if u == b), "own key under SET")
        conn.execute("RESET pgproxy.shard_key")
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE {SH_RANGE}").fetchone()[0], total, "after RESET")


def t_sh_refused():
    with connect(autocommit=True) as conn:
        # an INSERT without the key column, without a column list
        sh_refused(conn, f"INSERT INTO {SH} (id, name, n) VALUES (%s, %s, %s)", (99, "nokey", 1),
                   "INSERT without the key")
        sh_refused(conn, f"INSERT INTO {SH} DEFAULT VALUES", what="INSERT DEFAULT VALUES (no key)")
        # without a column list: routed by the table's column order (read by pgproxy)
        conn.execute(f"INSERT INTO {SH} VALUES (99, {SH_LO}, 'nocols', 1)")
        eq(conn.execute(f"SELECT name FROM {SH} WHERE user_id = {SH_LO} AND id = 99").fetchone(),
           ("nocols",), "INSERT without a column list")
        conn.execute(f"DELETE FROM {SH} WHERE user_id = {SH_LO} AND id = 99")
        # across shards: window function, string_agg, HAVING, count(DISTINCT)
        sh_refused(conn, f"SELECT user_id, row_number() OVER (ORDER BY n) FROM {SH} WHERE {SH_RANGE}",
                   what="window function")
        eq(conn.execute("SELECT 1").fetchone(), (1,), "usable after the refusal")
        sh_refused(conn, f"SELECT string_agg(name, ',') FROM {SH} WHERE {SH_RANGE}", what="string_agg")
        sh_refused(conn, f"SELECT user_id, count(*) FROM {SH} WHERE {SH_RANGE} GROUP BY user_id"
                         " HAVING count(*) > 2", what="HAVING")
        sh_refused(conn, f"SELECT count(DISTINCT id) FROM {SH} WHERE {SH_RANGE}", what="count(DISTINCT)")
        # prepared (extended protocol), several times: the refusal each time, then a point read
        for i in range(6):
            sh_refused(conn, f"SELECT user_id, rank() OVER (ORDER BY n) FROM {SH} WHERE user_id > %s",
                       (SH_LO,), f"window function, prepared {i}")
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE user_id = %s", (SH_LO + 1,)).fetchone()[0],
           sum(1 for (u, _) in sh_rows if u == SH_LO + 1), "point read after the refusals")
        # the same with a window function over one user's rows: allowed (one shard)
        got = conn.execute(f"SELECT id, row_number() OVER (ORDER BY id) FROM {SH} WHERE user_id = %s"
                           " ORDER BY id", (SH_LO + 1,)).fetchall()
        eq(got, [(i, k + 1) for k, i in enumerate(sorted(i for (u, i) in sh_rows if u == SH_LO + 1))],
           "window function for one key")
        sh_check_all(conn, "nothing inserted by refused statements")


def t_sh_int4_key():
    """The key as psycopg sends a Python int below 2**31: a binary int4 parameter (int2 below
    2**15), which PostgreSQL casts to the bigint column."""
    u = SH_SMALL
    with connect(autocommit=True) as conn:
        conn.execute(f"DELETE FROM {SH} WHERE user_id = %s", (u,))
        cur = conn.execute(f"INSERT INTO {SH} (id, user_id, name, n) VALUES (%s, %s, %s, %s)", (1, u, "int4", 4))
        eq(cur.rowcount, 1, "insert rowcount")
        eq(conn.execute(f"SELECT name, n FROM {SH} WHERE user_id = %s", (u,)).fetchall(), [("int4", 4)], "read back")
        eq(conn.execute(f"DELETE FROM {SH} WHERE user_id = %s", (u,)).rowcount, 1, "delete")


def t_sh_cleanup():
    with connect(autocommit=True) as conn:
        cur = conn.execute(f"DELETE FROM {SH} WHERE {SH_RANGE}")
        eq(cur.rowcount, len(sh_rows), "rows deleted")
        eq(conn.execute(f"SELECT count(*) FROM {SH} WHERE {SH_RANGE}").fetchone()[0], 0, "none left")


print(f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}, impl {psycopg.pq.__impl__}, "
      f"target {TARGET} {HOST}:{PORT}", flush=True)
C.run("connect (SCRAM) and parameter status", t_connect)
C.run("simple queries", t_simple)
C.run("parameters of many types (text and binary)", t_types)
C.run("prepared statements past prepare_threshold", t_prepared)
C.run("transactions: commit, rollback, savepoint", t_transactions)
C.run("error in transaction, rollback, continue", t_error_in_tx)
C.run("COPY in/out, errors during COPY", t_copy)
C.run("LISTEN/NOTIFY", t_listen_notify)
C.run("SET settings follow the client", t_settings)
C.run("12 concurrent connections, prepared statements", t_concurrency, timeout=120)
C.run("server-side (named) cursors", t_named_cursor)
C.run("pipeline mode", t_pipeline)
C.run("pipeline: error before the rest of the batch is sent", t_pipeline_error_first)
C.run("query cancellation", t_cancel)
if TARGET == "sharded":
    C.run("sharded table: inserts by key (prepared), placement on both shards", t_sh_setup)
    if sh_port:
        C.run("sharded table: point reads by key, prepared", t_sh_point_reads)
        C.run("sharded table: UPDATE / DELETE by key", t_sh_update_delete)
        C.run("sharded table: transaction on one user, commit and rollback", t_sh_tx_one_user)
        C.run("sharded table: transaction on two shards (2PC), commit and rollback", t_sh_tx_two_shards)
        C.run("sharded table: executemany with every user's rows (one request, several shards)", t_sh_executemany)
        C.run("sharded table: keyless reads merged (count, sum, avg, ORDER BY LIMIT, GROUP BY)", t_sh_merged_reads)
        C.run("sharded table: shard_key comment hint, SET pgproxy.shard_key", t_sh_hints)
        C.run("sharded table: refused with 0A000 (no key on INSERT, window function, ...)", t_sh_refused)
        C.run("sharded table: cursor.copy() text and binary, rows to their shards", t_sh_copy)
    C.run("sharded table: INSERT with the key as an int4 parameter", t_sh_int4_key)
    C.run("sharded table: cleanup", t_sh_cleanup)
C.run("cleanup", t_cleanup)
C.finish()
