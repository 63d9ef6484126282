"""psycopg2 through pgproxy (or PostgreSQL directly): see scripts/test-drivers.

psycopg2 speaks only the simple query protocol: parameters are interpolated on the client
(quoted by libpq according to standard_conforming_strings), transactions are opened by an
implicit BEGIN before the first statement unless autocommit is on, named cursors are SQL-level
DECLARE/FETCH/MOVE/CLOSE.

Prints one PASS/FAIL line per check; exits 1 if any check failed.
Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
"""

import datetime as dt
import decimal
import io
import select
import threading
import time
import uuid

import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
import psycopg2.extensions as ext
import psycopg2.extras
import psycopg2.pool
from psycopg2 import errors, sql

from common import DB, HOST, PASSWORD, PORT, TAG, TARGET, USER, Checks, eq

C = Checks("psycopg2")
T = f"drv_psycopg2_{TAG}"  # this run's table

psycopg2.extras.register_uuid()


def connect(**kw):
    return psycopg2.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DB, connect_timeout=10, **kw
    )


def one(conn, q, params=None):
    with conn.cursor() as cur:
        cur.execute(q, params)
        return cur.fetchone()


def tx_status(conn):
    return conn.info.transaction_status


def expect_error(conn, q, params, cls, code, what):
    """Runs q on a new cursor of conn and returns the error, which must be of class cls with
    SQLSTATE code (both the pgcode attribute and the diag field)."""
    with conn.cursor() as cur:
        try:
            cur.execute(q, params)
        except psycopg2.Error as e:
            assert isinstance(e, cls), f"{what}: {type(e).__name__} is not {cls.__name__}: {e}"
            eq(e.pgcode, code, f"{what}: pgcode")
            eq(e.diag.sqlstate, code, f"{what}: diag.sqlstate")
            assert e.pgerror and e.diag.message_primary, f"{what}: no message"
            return e
    raise AssertionError(f"{what}: no error")


def t_connect():
    conn = connect()
    try:
        eq(conn.closed, 0, "closed")
        eq(conn.status, ext.STATUS_READY, "status")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "transaction status")
        assert conn.server_version >= 100000, f"server_version {conn.server_version}"
        eq(conn.info.protocol_version, 3, "protocol version")
        # psycopg2 quotes parameters according to these ParameterStatus values
        eq(conn.info.parameter_status("client_encoding"), "UTF8", "client_encoding")
        eq(conn.info.parameter_status("standard_conforming_strings"), "on", "standard_conforming_strings")
        eq(conn.encoding, "UTF8", "conn.encoding")
        eq(conn.get_backend_pid() > 0, True, "backend pid")
        eq(one(conn, "SELECT current_user, current_database()"), (USER, DB), "who")
        # the implicit BEGIN: a transaction is open after the first statement
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INTRANS, "in transaction after SELECT")
        conn.rollback()
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after rollback")
    finally:
        conn.close()
    eq(conn.closed, 1, "closed after close()")
    # a DSN string, as many applications configure it
    dsn = f"host={HOST} port={PORT} user={USER} password={PASSWORD} dbname={DB} application_name=psycopg2-drv"
    with psycopg2.connect(dsn) as conn2:
        eq(one(conn2, "SHOW application_name"), ("psycopg2-drv",), "application_name from the DSN")
    conn2.close()
    # a wrong password is refused with 28P01
    try:
        psycopg2.connect(host=HOST, port=PORT, user=USER, password="wrong", dbname=DB, connect_timeout=10).close()
        raise AssertionError("connected with a wrong password")
    except psycopg2.OperationalError as e:
        assert "password authentication failed" in str(e), f"wrong password: {e}"


def t_simple():
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        eq(cur.fetchone(), (1,), "select 1")
        # several statements in one Query: psycopg2 keeps the last result
        cur.execute(f"DROP TABLE IF EXISTS {T}; CREATE TABLE {T} (id int PRIMARY KEY, v text)")
        cur.execute(f"INSERT INTO {T} VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        eq(cur.rowcount, 2, "rowcount")
        eq(cur.statusmessage, "INSERT 0 2", "statusmessage")
        conn.commit()
        cur.execute(f"SELECT id, v FROM {T} WHERE id >= %s ORDER BY id", (1,))
        eq(cur.fetchall(), [(1, "a"), (2, "b")], "rows")
        eq([d.name for d in cur.description], ["id", "v"], "column names")
        eq(cur.description[0].type_code, 23, "int4 type oid")
        cur.execute(f"SELECT id, v FROM {T} WHERE v = %(v)s", {"v": "b"})
        eq(cur.fetchall(), [(2, "b")], "named parameters")
        cur.execute(f"SELECT * FROM {T} WHERE false")
        eq(cur.fetchall(), [], "no rows")
        eq(cur.rowcount, 0, "rowcount 0")
        # IN with a tuple, = ANY with a list
        cur.execute(f"SELECT count(*) FROM {T} WHERE id IN %s", ((1, 2, 3),))
        eq(cur.fetchone(), (2,), "IN tuple")
        cur.execute(f"SELECT count(*) FROM {T} WHERE id = ANY(%s)", ([2, 3],))
        eq(cur.fetchone(), (1,), "ANY list")
        # fetchmany, iteration, scroll of a client-side cursor
        cur.execute("SELECT generate_series(1, 10)")
        eq(cur.fetchmany(3), [(1,), (2,), (3,)], "fetchmany")
        eq([r[0] for r in cur], list(range(4, 11)), "iterate")
        # dict / named tuple cursors
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as dcur:
            dcur.execute(f"SELECT id, v FROM {T} ORDER BY id LIMIT 1")
            eq(dcur.fetchone(), {"id": 1, "v": "a"}, "RealDictCursor")
        with conn.cursor(cursor_factory=psycopg2.extras.NamedTupleCursor) as ncur:
            ncur.execute(f"SELECT id, v FROM {T} ORDER BY id DESC LIMIT 1")
            r = ncur.fetchone()
            eq((r.id, r.v), (2, "b"), "NamedTupleCursor")
        # psycopg2.sql composition
        q = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
            sql.Identifier("v"), sql.Identifier(T), sql.Identifier("id"))
        cur.execute(q, (2,))
        eq(cur.fetchone(), ("b",), "sql.Identifier")
        # a query of only a comment: the server answers EmptyQueryResponse, which psycopg2 turns
        # into an error of its own; the connection goes on
        try:
            cur.execute("-- nothing")
            raise AssertionError("no error for an empty query")
        except psycopg2.ProgrammingError as e:
            assert "empty query" in str(e), f"empty query: {e}"
        cur.execute("SELECT 'after empty'")
        eq(cur.fetchone(), ("after empty",), "after the empty query")
        conn.rollback()
    finally:
        conn.close()


def t_types():
    vals = {
        "i": 42,
        "b": 2**40 + 7,
        "n": decimal.Decimal("12345678901234567890.123456789"),
        "f": 1.5,
        "inf": float("inf"),
        "t": "héllo ☃ 'quote' \"dq\" back\\slash %s %(x)s; --",
        "bo": True,
        "null": None,
        "d": dt.date(1999, 12, 31),
        "ts": dt.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=dt.timezone.utc),
        "tsn": dt.datetime(2001, 2, 3, 4, 5, 6, 7),
        "iv": dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000),
        "by": b"\x00\x01\xff'\\binary",
        "arr": [1, 2, 3],
        "tarr": ["x", None, "z", "q'uote", "com,ma", "{brace}"],
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    jv = {"a": [1, 2, {"b": None}], "c": "d'é", "e": 1.5}
    q = (
        "SELECT %(i)s::int, %(b)s::bigint, %(n)s::numeric, %(f)s::float8, %(inf)s::float8,"
        " %(t)s::text, %(bo)s::bool, %(null)s::text, %(d)s::date, %(ts)s::timestamptz,"
        " %(tsn)s::timestamp, %(iv)s::interval, %(by)s::bytea, %(arr)s::int[], %(tarr)s::text[],"
        " %(u)s::uuid, %(j)s::json, %(jb)s::jsonb"
    )
    params = dict(vals, j=psycopg2.extras.Json(jv), jb=psycopg2.extras.Json(jv))
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(q, params)
        row = list(cur.fetchone())
        row[12] = bytes(row[12])  # bytea comes back as a memoryview
        exp = [
            vals["i"], vals["b"], vals["n"], vals["f"], vals["inf"], vals["t"], vals["bo"], None,
            vals["d"], vals["ts"], vals["tsn"], vals["iv"], vals["by"], vals["arr"], vals["tarr"],
            vals["u"], jv, jv,
        ]
        for k, (a, e) in enumerate(zip(row, exp)):
            eq(a, e, f"column {k}")
        eq(type(row[2]), decimal.Decimal, "numeric type")
        assert row[9].tzinfo is not None, "timestamptz without tzinfo"
        # values typed by the server, not by a cast of a parameter
        cur.execute(
            "SELECT 2147483647, 9223372036854775807, 1.25::numeric, 'NaN'::float8, true, NULL,"
            " '2024-01-01'::date, '1 day 02:03:04.5'::interval, '\\xdeadbeef'::bytea,"
            " ARRAY[[1,2],[3,4]], '{\"k\": [true, null]}'::jsonb, gen_random_uuid() IS NOT NULL"
        )
        r = cur.fetchone()
        eq(r[:3], (2147483647, 9223372036854775807, decimal.Decimal("1.25")), "numbers")
        assert r[3] != r[3], f"NaN: {r[3]}"
        eq(r[4:8], (True, None, dt.date(2024, 1, 1), vals["iv"]), "bool, null, date, interval")
        eq(bytes(r[8]), b"\xde\xad\xbe\xef", "bytea literal")
        eq(r[9], [[1, 2], [3, 4]], "2-d array")
        eq(r[10], {"k": [True, None]}, "jsonb literal")
        eq(r[11], True, "uuid")
        # a large text and bytea round trip (several protocol frames worth)
        big = "x" * 300_000
        cur.execute("SELECT length(%s::text)", (big,))
        eq(cur.fetchone(), (300_000,), "big text")
        blob = bytes(range(256)) * 1000
        cur.execute("SELECT %s::bytea", (psycopg2.Binary(blob),))
        eq(bytes(cur.fetchone()[0]), blob, "big bytea")
        # mogrify shows the query as sent
        m = cur.mogrify("SELECT %s, %s, %s", ("it's", None, [1, 2]))
        eq(m, b"SELECT 'it''s', NULL, ARRAY[1,2]", "mogrify")
        cur.execute(m)
        eq(cur.fetchone(), ("it's", None, [1, 2]), "mogrified query")
        # timestamptz follows the session's TimeZone
        cur.execute("SET TimeZone = 'Asia/Tokyo'")
        cur.execute("SELECT '2024-01-01 00:00:00+00'::timestamptz")
        r = cur.fetchone()[0]
        eq(r.utcoffset(), dt.timedelta(hours=9), "timestamptz offset")
        conn.rollback()
    finally:
        conn.close()


def t_transactions():
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE IF NOT EXISTS {T}_tx (a int)")
        conn.commit()
        cur.execute(f"INSERT INTO {T}_tx VALUES (%s)", (1,))
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INTRANS, "in transaction")
        conn.commit()
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after commit")
        cur.execute(f"INSERT INTO {T}_tx VALUES (%s)", (2,))
        conn.rollback()
        cur.execute(f"SELECT array_agg(a) FROM {T}_tx")
        eq(cur.fetchone()[0], [1], "after rollback")
        conn.rollback()
        # "with conn": commit at the end of the block, rollback on an exception
        with conn:
            with conn.cursor() as c2:
                c2.execute(f"INSERT INTO {T}_tx VALUES (3)")
        try:
            with conn:
                with conn.cursor() as c2:
                    c2.execute(f"INSERT INTO {T}_tx VALUES (4)")
                    raise RuntimeError("roll back")
        except RuntimeError:
            pass
        # a savepoint inside a transaction
        cur.execute(f"INSERT INTO {T}_tx VALUES (5)")
        cur.execute("SAVEPOINT s1")
        cur.execute(f"INSERT INTO {T}_tx VALUES (6)")
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        cur.execute("RELEASE SAVEPOINT s1")
        conn.commit()
        cur.execute(f"SELECT array_agg(a ORDER BY a) FROM {T}_tx")
        eq(cur.fetchone()[0], [1, 3, 5], "with conn, savepoint")
        conn.commit()
        # another connection sees only committed rows
        other = connect()
        try:
            cur.execute(f"INSERT INTO {T}_tx VALUES (7)")
            eq(one(other, f"SELECT count(*) FROM {T}_tx"), (3,), "uncommitted row invisible")
            other.rollback()
            conn.commit()
            eq(one(other, f"SELECT count(*) FROM {T}_tx"), (4,), "committed row visible")
            other.rollback()
        finally:
            other.close()
        # set_session: isolation level and read only (psycopg2 sends BEGIN ISOLATION LEVEL ...)
        conn.set_session(isolation_level=ext.ISOLATION_LEVEL_SERIALIZABLE, readonly=True)
        eq(one(conn, "SHOW transaction_isolation"), ("serializable",), "isolation level")
        eq(one(conn, "SHOW transaction_read_only"), ("on",), "read only")
        expect_error(conn, f"INSERT INTO {T}_tx VALUES (8)", None, errors.ReadOnlySqlTransaction,
                     "25006", "write in a read-only transaction")
        conn.rollback()
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
        eq(one(conn, "SHOW transaction_isolation"), ("read committed",), "isolation level reset")
        eq(one(conn, "SHOW transaction_read_only"), ("off",), "read write again")
        conn.rollback()
        # the next connection of the same pool does not see the read only setting
        eq(one(conn, "SHOW default_transaction_read_only"), ("off",), "default_transaction_read_only")
        conn.rollback()
        cur.execute(f"DROP TABLE {T}_tx")
        conn.commit()
    finally:
        conn.close()


def t_error_in_tx():
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE IF NOT EXISTS {T}_e (id int PRIMARY KEY)")
        cur.execute(f"INSERT INTO {T}_e VALUES (1)")
        conn.commit()
        # unique violation inside a transaction: aborted, rollback, continue
        cur.execute(f"INSERT INTO {T}_e VALUES (2)")
        e = expect_error(conn, f"INSERT INTO {T}_e VALUES (%s)", (1,), errors.UniqueViolation,
                         "23505", "duplicate key")
        eq(e.pgcode, psycopg2.errorcodes.UNIQUE_VIOLATION, "errorcodes")
        eq(e.diag.constraint_name, f"{T}_e_pkey", "diag.constraint_name")
        eq(e.diag.table_name, f"{T}_e", "diag.table_name")
        assert isinstance(e, psycopg2.IntegrityError), "UniqueViolation is an IntegrityError"
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INERROR, "status INERROR")
        expect_error(conn, "SELECT 1", None, errors.InFailedSqlTransaction, "25P02", "in aborted transaction")
        conn.rollback()
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after rollback")
        eq(one(conn, f"SELECT array_agg(id) FROM {T}_e"), ([1],), "row 2 rolled back")
        conn.rollback()
        # division by zero, undefined table: the connection stays usable
        expect_error(conn, "SELECT 1 / %s", (0,), errors.DivisionByZero, "22012", "1/0")
        assert isinstance(errors.lookup("22012")(), psycopg2.DataError), "errors.lookup"
        conn.rollback()
        expect_error(conn, "SELECT * FROM no_such_table_xyz WHERE a = %s", (1,),
                     errors.UndefinedTable, "42P01", "undefined table")
        conn.rollback()
        expect_error(conn, "SELEKT 1", None, errors.SyntaxError, "42601", "syntax error")
        conn.rollback()
        expect_error(conn, "SELECT 'abc'::int", None, errors.InvalidTextRepresentation, "22P02", "bad int")
        conn.rollback()
        eq(conn.closed, 0, "connection open")
        eq(one(conn, "SELECT 2"), (2,), "after errors")
        conn.rollback()
        # an error in the middle of a multi-statement query: nothing of it is kept
        expect_error(conn, f"INSERT INTO {T}_e VALUES (10); SELECT 1/0; INSERT INTO {T}_e VALUES (11)",
                     None, errors.DivisionByZero, "22012", "multi-statement")
        conn.rollback()
        eq(one(conn, f"SELECT count(*) FROM {T}_e"), (1,), "multi-statement rolled back")
        conn.rollback()
        # autocommit: an error needs no rollback
        conn.autocommit = True
        expect_error(conn, f"INSERT INTO {T}_e VALUES (1)", None, errors.UniqueViolation, "23505", "autocommit dup")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after autocommit error")
        eq(one(conn, "SELECT 3"), (3,), "after autocommit error")
        # an error raised by plpgsql with our own SQLSTATE
        expect_error(conn, "DO $$ BEGIN RAISE EXCEPTION 'custom' USING ERRCODE = 'P0099'; END $$",
                     None, psycopg2.InternalError, "P0099", "custom SQLSTATE")
        cur.execute(f"DROP TABLE {T}_e")
    finally:
        conn.close()


def t_autocommit():
    conn = connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE IF NOT EXISTS {T}_ac (a int)")
        cur.execute(f"INSERT INTO {T}_ac VALUES (1)")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_IDLE, "no implicit transaction")
        other = connect()
        try:
            eq(one(other, f"SELECT count(*) FROM {T}_ac"), (1,), "visible at once")
            other.rollback()
        finally:
            other.close()
        # an explicit transaction in autocommit mode
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO {T}_ac VALUES (2)")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INTRANS, "explicit BEGIN")
        cur.execute("ROLLBACK")
        # statements that cannot run in a transaction block
        cur.execute(f"VACUUM {T}_ac")
        cur.execute(f"CREATE INDEX CONCURRENTLY {T}_ac_idx ON {T}_ac (a)")
        cur.execute(f"SELECT count(*) FROM {T}_ac")
        eq(cur.fetchone(), (1,), "rows")
        # and back to implicit transactions
        conn.autocommit = False
        cur.execute(f"INSERT INTO {T}_ac VALUES (3)")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INTRANS, "implicit BEGIN again")
        conn.rollback()
        cur.execute(f"SELECT count(*) FROM {T}_ac")
        eq(cur.fetchone(), (1,), "rolled back")
        conn.rollback()
        conn.autocommit = True
        cur.execute(f"DROP TABLE {T}_ac")
    finally:
        conn.close()


def t_executemany():
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {T}_m")
        cur.execute(f"CREATE TABLE {T}_m (id serial PRIMARY KEY, a int, b text)")
        conn.commit()
        cur.executemany(f"INSERT INTO {T}_m (a, b) VALUES (%s, %s)", [(i, f"r{i}") for i in range(50)])
        eq(cur.rowcount, 50, "executemany rowcount")
        conn.commit()
        cur.execute(f"SELECT count(*), sum(a) FROM {T}_m")
        eq(cur.fetchone(), (50, 1225), "executemany")
        # execute_batch (several statements per Query)
        psycopg2.extras.execute_batch(
            cur, f"UPDATE {T}_m SET b = %s WHERE a = %s", [(f"u{i}", i) for i in range(50)], page_size=20)
        conn.commit()
        cur.execute(f"SELECT count(*) FROM {T}_m WHERE b LIKE 'u%%'")
        eq(cur.fetchone(), (50,), "execute_batch")
        # execute_values with RETURNING, several pages
        rows = psycopg2.extras.execute_values(
            cur, f"INSERT INTO {T}_m (a, b) VALUES %s RETURNING id, a, b",
            [(1000 + i, f"v{i}") for i in range(250)], page_size=100, fetch=True)
        eq(len(rows), 250, "execute_values returned rows")
        eq([(r[1], r[2]) for r in rows[:2]], [(1000, "v0"), (1001, "v1")], "returned values")
        eq(len({r[0] for r in rows}), 250, "distinct ids")
        assert min(r[0] for r in rows) > 50, "serial ids continue"
        conn.commit()
        # execute_values with a template, and an UPDATE ... FROM (VALUES %s)
        psycopg2.extras.execute_values(
            cur, f"UPDATE {T}_m SET b = data.b FROM (VALUES %s) AS data (a, b) WHERE {T}_m.a = data.a",
            [(1000, "x0"), (1001, "x1")], template="(%s::int, %s)")
        conn.commit()
        cur.execute(f"SELECT b FROM {T}_m WHERE a IN (1000, 1001) ORDER BY a")
        eq(cur.fetchall(), [("x0",), ("x1",)], "update from values")
        cur.execute(f"SELECT count(*) FROM {T}_m")
        eq(cur.fetchone(), (300,), "total")
        conn.rollback()
        # INSERT ... RETURNING on a plain execute
        cur.execute(f"INSERT INTO {T}_m (a, b) VALUES (%s, %s) RETURNING id, b", (7, "seven"))
        rid, b = cur.fetchone()
        eq(b, "seven", "returning")
        conn.commit()
        eq(one(conn, f"SELECT a FROM {T}_m WHERE id = %s", (rid,)), (7,), "returned id")
        cur.execute(f"DROP TABLE {T}_m")
        conn.commit()
    finally:
        conn.close()


def t_named_cursor():
    conn = connect()
    try:
        # DECLARE ... CURSOR WITHOUT HOLD in the implicit transaction, FETCH FORWARD itersize
        cur = conn.cursor(name=f"cur_{TAG}")
        cur.itersize = 7
        cur.execute("SELECT g, g::text FROM generate_series(1, 100) g WHERE g > %s", (0,))
        first = cur.fetchmany(10)
        eq(first[0], (1, "1"), "first row")
        eq(len(first), 10, "fetchmany")
        # another statement between fetches on the same connection
        eq(one(conn, "SELECT 'between'"), ("between",), "query between fetches")
        rest = list(cur)
        eq(len(first) + len(rest), 100, "total rows")
        eq(rest[-1], (100, "100"), "last row")
        cur.close()
        conn.commit()
        # fetchone / fetchall on a named cursor, a dict cursor factory
        cur = conn.cursor(name=f"dcur_{TAG}", cursor_factory=psycopg2.extras.RealDictCursor)
        cur.execute("SELECT g AS n FROM generate_series(1, 5) g")
        eq(cur.fetchone(), {"n": 1}, "named fetchone")
        eq([r["n"] for r in cur.fetchall()], [2, 3, 4, 5], "named fetchall")
        cur.close()
        conn.rollback()
        # scrollable cursor: MOVE ABSOLUTE / RELATIVE
        cur = conn.cursor(name=f"scur_{TAG}", scrollable=True)
        cur.execute("SELECT generate_series(1, 10)")
        cur.scroll(5, mode="absolute")
        eq(cur.fetchone(), (6,), "scroll absolute")
        cur.scroll(-3)
        eq(cur.fetchone(), (4,), "scroll relative")
        cur.close()
        conn.commit()
        # a larger result in batches of itersize
        cur = conn.cursor(name=f"bcur_{TAG}")
        cur.itersize = 1000
        cur.execute("SELECT g, repeat('y', 50) FROM generate_series(1, 20000) g")
        n = s = 0
        for g, _ in cur:
            n += 1
            s += g
        eq((n, s), (20000, 20000 * 20001 // 2), "batched rows")
        cur.close()
        conn.commit()
        # WITH HOLD in autocommit mode: the cursor outlives its transaction (pins the client to
        # its server connection in transaction pooling)
        conn.autocommit = True
        cur = conn.cursor(name=f"hcur_{TAG}", withhold=True)
        cur.itersize = 10
        cur.execute("SELECT generate_series(1, 25)")
        eq(len(cur.fetchmany(10)), 10, "with hold: first batch")
        eq(one(conn, "SELECT 'between'"), ("between",), "with hold: query between fetches")
        eq(len(cur.fetchall()), 15, "with hold: rest")
        cur.close()
        eq(one(conn, "SELECT 1"), (1,), "after closing the WITH HOLD cursor")
    finally:
        conn.close()


def t_copy():
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {T}_c")
        cur.execute(f"CREATE TABLE {T}_c (a int, b text, c bytea)")
        conn.commit()
        n = 5000
        buf = io.StringIO("".join(f"{i}\trow {i} é\\ttab\t\\\\x{i % 256:02x}\n" for i in range(n)))
        cur.copy_expert(f"COPY {T}_c (a, b, c) FROM STDIN", buf)
        eq(cur.rowcount, n, "copy_expert in rowcount")
        conn.commit()
        cur.execute(f"SELECT count(*), sum(a) FROM {T}_c")
        eq(cur.fetchone(), (n, n * (n - 1) // 2), "copy in")
        cur.execute(f"SELECT b, c FROM {T}_c WHERE a = 7")
        r = cur.fetchone()
        eq((r[0], bytes(r[1])), ("row 7 é\ttab", b"\x07"), "copied row")
        conn.commit()
        # CSV with a header
        csv = io.StringIO('a,b\n-1,"x, ""quoted"""\n-2,\n')
        cur.copy_expert(f"COPY {T}_c (a, b) FROM STDIN WITH (FORMAT csv, HEADER true)", csv)
        conn.commit()
        cur.execute(f"SELECT a, b FROM {T}_c WHERE a < 0 ORDER BY a DESC")
        eq(cur.fetchall(), [(-1, 'x, "quoted"'), (-2, None)], "csv copy")
        conn.commit()
        # COPY TO STDOUT
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT a, b FROM {T}_c WHERE a >= 0 ORDER BY a) TO STDOUT", out)
        lines = out.getvalue().splitlines()
        eq(len(lines), n, "copy out rows")
        eq(lines[7], "7\trow 7 é\\ttab", "copy out row 7")
        out = io.StringIO()
        cur.copy_expert(f"COPY (SELECT a, b FROM {T}_c WHERE a < 0 ORDER BY a) TO STDOUT WITH CSV HEADER", out)
        eq(out.getvalue(), 'a,b\n-2,\n-1,"x, ""quoted"""\n', "csv out")
        conn.commit()
        # copy_from / copy_to
        cur.execute(f"CREATE TABLE {T}_c2 (a int, b text)")
        conn.commit()
        cur.copy_from(io.StringIO("1|one\n2|\\N\n3|three\n"), f"{T}_c2", sep="|", columns=("a", "b"))
        conn.commit()
        out = io.StringIO()
        cur.copy_to(out, f"{T}_c2", sep=",", null="NULL", columns=("b", "a"))
        eq(sorted(out.getvalue().splitlines()), ["NULL,2", "one,1", "three,3"], "copy_to")
        conn.commit()
        # bad data: 22P02, rollback, the connection is usable
        try:
            cur.copy_expert(f"COPY {T}_c2 (a) FROM STDIN", io.StringIO("1\nnot-a-number\n"))
            raise AssertionError("no error for bad COPY data")
        except errors.InvalidTextRepresentation as e:
            eq(e.pgcode, "22P02", "pgcode")
        eq(tx_status(conn), ext.TRANSACTION_STATUS_INERROR, "aborted after bad copy")
        conn.rollback()
        eq(one(conn, f"SELECT count(*) FROM {T}_c2"), (3,), "after failed copy")
        conn.rollback()
        # a file object that raises while being read: psycopg2 sends CopyFail
        class Broken(io.StringIO):
            def read(self, *a):
                raise OSError("broken source")

            readline = read

        try:
            cur.copy_expert(f"COPY {T}_c2 (a) FROM STDIN", Broken())
            raise AssertionError("no error for a broken source")
        except (OSError, errors.QueryCanceled):
            pass
        conn.rollback()
        eq(one(conn, f"SELECT count(*) FROM {T}_c2"), (3,), "after CopyFail")
        conn.rollback()
        # COPY in a transaction, rolled back
        cur.copy_expert(f"COPY {T}_c2 (a) FROM STDIN", io.StringIO("9\n"))
        conn.rollback()
        eq(one(conn, f"SELECT count(*) FROM {T}_c2"), (3,), "rolled back copy")
        conn.rollback()
        # in autocommit mode
        conn.autocommit = True
        cur.copy_expert(f"COPY {T}_c2 (a, b) FROM STDIN", io.StringIO("10\tten\n"))
        eq(one(conn, f"SELECT b FROM {T}_c2 WHERE a = 10"), ("ten",), "autocommit copy")
        cur.execute(f"DROP TABLE {T}_c, {T}_c2")
    finally:
        conn.close()


def t_large_result():
    conn = connect()
    try:
        cur = conn.cursor()
        n = 50_000
        cur.execute(
            "SELECT g, 'row ' || g, g * 1.5::float8, g %% 2 = 0 FROM generate_series(1, %s) g", (n,))
        rows = cur.fetchall()
        eq(len(rows), n, "rows")
        eq(cur.rowcount, n, "rowcount")
        eq(rows[0], (1, "row 1", 1.5, False), "first")
        eq(rows[-1], (n, f"row {n}", n * 1.5, True), "last")
        eq(sum(r[0] for r in rows), n * (n + 1) // 2, "sum")
        # wide rows
        cur.execute("SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 5000) g")
        eq(sum(len(r[1]) for r in cur.fetchall()), 5000 * 32 * 30, "wide rows")
        conn.rollback()
    finally:
        conn.close()


def t_function():
    conn = connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(
            f"CREATE OR REPLACE FUNCTION {T}_add(a int, b int) RETURNS int LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE NOTICE 'adding % and %', a, b; RETURN a + b; END $$")
        cur.execute(
            f"CREATE OR REPLACE FUNCTION {T}_pairs(n int, OUT i int, OUT sq int) RETURNS SETOF record"
            " LANGUAGE sql AS $$ SELECT g, g * g FROM generate_series(1, n) g $$")
        if TARGET == "sharded":
            # pgproxy cannot see into a user function: without a key it refuses the call
            # (0A000); SET pgproxy.shard_key says which shard's rows the calls are about.
            try:
                cur.callproc(f"{T}_add", (2, 3))
                raise AssertionError("a keyless call of a user function was not refused")
            except psycopg2.errors.FeatureNotSupported:
                pass
            cur.execute("SET pgproxy.shard_key = 1")
        del conn.notices[:]
        cur.callproc(f"{T}_add", (2, 3))
        eq(cur.fetchall(), [(5,)], "callproc")
        eq(len(conn.notices), 1, f"one notice: {conn.notices}")
        assert "adding 2 and 3" in conn.notices[0], f"notice text: {conn.notices}"
        cur.callproc(f"{T}_add", {"a": 10, "b": 20})
        eq(cur.fetchone(), (30,), "callproc with named arguments")
        cur.callproc(f"{T}_pairs", (4,))
        eq(cur.fetchall(), [(1, 1), (2, 4), (3, 9), (4, 16)], "set-returning function")
        eq([d.name for d in cur.description], ["i", "sq"], "OUT parameter names")
        if TARGET == "sharded":
            cur.execute("RESET pgproxy.shard_key")
        cur.execute(f"DROP FUNCTION {T}_add(int, int)")
        cur.execute(f"DROP FUNCTION {T}_pairs(int)")
    finally:
        conn.close()


def t_listen_notify():
    chan = f"p2chan_{TAG}"
    listener = connect()
    notifier = connect()
    try:
        listener.autocommit = True
        notifier.autocommit = True
        lcur = listener.cursor()
        ncur = notifier.cursor()
        lcur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(chan)))
        ncur.execute("SELECT pg_notify(%s, %s)", (chan, "hello"))
        ncur.execute(sql.SQL("NOTIFY {}, 'second'").format(sql.Identifier(chan)))

        def wait_for(k, secs=10):
            deadline = time.monotonic() + secs
            while len(listener.notifies) < k and time.monotonic() < deadline:
                if select.select([listener], [], [], 0.5) != ([], [], []):
                    listener.poll()
            got = [(x.channel, x.payload) for x in listener.notifies]
            del listener.notifies[:]
            return got

        eq(wait_for(2), [(chan, "hello"), (chan, "second")], "notifications")
        # a notification arriving while the listener runs queries
        ncur.execute("SELECT pg_notify(%s, 'third')", (chan,))
        time.sleep(0.2)
        lcur.execute("SELECT 1")
        eq([x.payload for x in listener.notifies], ["third"], "notification during query")
        assert listener.notifies[0].pid > 0, "notifier pid"
        del listener.notifies[:]
        # NOTIFY inside a transaction is delivered at commit only
        notifier.autocommit = False
        ncur.execute("SELECT pg_notify(%s, 'in tx')", (chan,))
        eq(wait_for(1, 0.5), [], "before commit")
        notifier.commit()
        eq(wait_for(1), [(chan, "in tx")], "after commit")
        lcur.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(chan)))
        ncur.execute("SELECT pg_notify(%s, 'late')", (chan,))
        notifier.commit()
        eq(wait_for(1, 0.5), [], "after UNLISTEN")
    finally:
        listener.close()
        notifier.close()


def t_pool():
    # psycopg2.pool.ThreadedConnectionPool, as many web applications use it. In session mode each
    # pooled connection holds one of the proxy's 2 server connections for as long as it stays
    # open, so a pool larger than that would wait for a server connection at login.
    maxconn = 2 if TARGET == "session" else 6
    pool = psycopg2.pool.ThreadedConnectionPool(1, maxconn, host=HOST, port=PORT, user=USER,
                                                password=PASSWORD, dbname=DB, connect_timeout=10)
    errs = []
    sem = threading.Semaphore(maxconn)

    def worker(k):
        try:
            for i in range(20):
                with sem:
                    conn = pool.getconn()
                    try:
                        with conn:  # commit at the end
                            with conn.cursor() as cur:
                                v = k * 1000 + i
                                cur.execute("SELECT %s::int + 1, %s", (v, f"w{k}"))
                                r = cur.fetchone()
                                if r != (v + 1, f"w{k}"):
                                    raise AssertionError(f"worker {k} iteration {i}: got {r}")
                                if i % 4 == 0:
                                    cur.execute("SELECT 1 / %s", (0,))
                    except errors.DivisionByZero:
                        conn.rollback()
                    finally:
                        pool.putconn(conn)
        except Exception as e:  # noqa: BLE001
            errs.append(f"worker {k}: {type(e).__name__}: {e}")

    ths = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(90)
    pool.closeall()
    if any(t.is_alive() for t in ths):
        errs.append("a worker hung")
    if errs:
        raise AssertionError("; ".join(errs[:5]))


def t_cancel():
    conn = connect()
    try:
        def cancel_later():
            time.sleep(0.5)
            conn.cancel()

        cur = conn.cursor()
        th = threading.Thread(target=cancel_later)
        th.start()
        t0 = time.monotonic()
        try:
            cur.execute("SELECT pg_sleep(20)")
            raise AssertionError("pg_sleep was not cancelled")
        except errors.QueryCanceled as e:
            eq(e.pgcode, "57014", "pgcode")
        th.join()
        took = time.monotonic() - t0
        assert took < 10, f"cancel took {took:.1f}s"
        conn.rollback()
        eq(one(conn, "SELECT 'alive'"), ("alive",), "usable after cancel")
        conn.rollback()
        # statement_timeout (server side)
        conn.autocommit = True
        cur.execute("SET statement_timeout = '300ms'")
        try:
            cur.execute("SELECT pg_sleep(5)")
            raise AssertionError("statement_timeout did not fire")
        except errors.QueryCanceled:
            pass
        cur.execute("RESET statement_timeout")
        eq(one(conn, "SELECT 6"), (6,), "after statement_timeout")
    finally:
        conn.close()


def t_cleanup():
    conn = connect()
    try:
        conn.autocommit = True
        conn.cursor().execute(f"DROP TABLE IF EXISTS {T}")
    finally:
        conn.close()


print(f"psycopg2 {psycopg2.__version__}, libpq {psycopg2.__libpq_version__}, "
      f"target {TARGET} {HOST}:{PORT}", flush=True)
C.run("connect (SCRAM), DSN, wrong password", t_connect)
C.run("simple queries with parameters, cursor factories", t_simple)
C.run("types round trip (client-side interpolation)", t_types)
C.run("transactions: commit, rollback, with conn, savepoint, set_session", t_transactions)
C.run("errors with pgcode, rollback, continue", t_error_in_tx)
C.run("autocommit mode", t_autocommit)
C.run("executemany, execute_batch, execute_values RETURNING", t_executemany)
C.run("server-side (named) cursors, itersize, WITH HOLD", t_named_cursor)
C.run("COPY: copy_expert, copy_from, copy_to, errors", t_copy)
C.run("large result (50k rows)", t_large_result)
C.run("callproc, notices", t_function)
C.run("LISTEN/NOTIFY", t_listen_notify)
C.run("ThreadedConnectionPool, 12 threads", t_pool, timeout=120)
C.run("query cancellation", t_cancel)
C.run("cleanup", t_cleanup)
C.finish()
