"""psycopg 3 through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

Prints one PASS/FAIL line per check; exits 1 if any check failed.
Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
"""

import datetime as dt
import decimal
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
C.run("cleanup", t_cleanup)
C.finish()
