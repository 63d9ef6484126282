// node-postgres (pg) through pgproxy (or PostgreSQL directly): see scripts/test-drivers.
//
// Prints one PASS/FAIL line per check; exits 1 if any check failed.
// Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
'use strict'

const assert = require('node:assert/strict')
const { pipeline } = require('node:stream/promises')
const { Readable, Writable } = require('node:stream')
const pg = require('pg')
const Cursor = require('pg-cursor')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const TARGET = process.env.DRIVER_TARGET || 'unknown'
const CFG = {
  host: process.env.DRIVER_HOST || '127.0.0.1',
  port: Number(process.env.DRIVER_PORT || 6432),
  user: process.env.DRIVER_USER || 'app',
  password: process.env.DRIVER_PASSWORD || 'secret',
  database: process.env.DRIVER_DB || 'app',
  connectionTimeoutMillis: 10000,
}
const TAG = `${TARGET.slice(0, 3)}_${process.pid}`
const T = `drv_node_${TAG}`

let passed = 0
let failed = 0

async function check(name, fn, timeoutMs = 60000) {
  const t0 = Date.now()
  let timer
  try {
    await Promise.race([
      fn(),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`no answer after ${timeoutMs / 1000}s (hung)`)), timeoutMs)
      }),
    ])
    passed++
    console.log(`PASS node-postgres ${TARGET}: ${name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`)
  } catch (e) {
    failed++
    console.log(`FAIL node-postgres ${TARGET}: ${name}: ${e && e.stack ? e.stack : e}`)
  } finally {
    clearTimeout(timer)
  }
}

async function withClient(fn, extra = {}) {
  const c = new pg.Client({ ...CFG, ...extra })
  c.on('error', () => {})
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end().catch(() => {})
  }
}

async function expectError(p, code, what) {
  try {
    await p
  } catch (e) {
    assert.equal(e.code, code, `${what}: SQLSTATE`)
    return e
  }
  assert.fail(`${what}: no error`)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function tConnect() {
  await withClient(async (c) => {
    const r = await c.query('SELECT current_user AS u, current_setting($1) AS enc', ['client_encoding'])
    assert.equal(r.rows[0].u, CFG.user)
    assert.equal(r.rows[0].enc, 'UTF8')
    assert.ok(c.processID !== null && c.processID !== undefined, 'BackendKeyData')
  })
}

async function tSimple() {
  await withClient(async (c) => {
    // no parameters: the simple protocol, several statements at once
    const res = await c.query(
      `DROP TABLE IF EXISTS ${T}; CREATE TABLE ${T} (id int PRIMARY KEY, v text); ` +
        `INSERT INTO ${T} VALUES (1, 'a'), (2, 'b'); SELECT id, v FROM ${T} ORDER BY id`,
    )
    assert.equal(res.length, 4, 'four results')
    assert.equal(res[2].rowCount, 2)
    assert.deepEqual(res[3].rows, [{ id: 1, v: 'a' }, { id: 2, v: 'b' }])
    const r = await c.query({ text: `SELECT id, v FROM ${T} ORDER BY id`, rowMode: 'array' })
    assert.deepEqual(r.rows, [[1, 'a'], [2, 'b']])
    assert.equal(r.fields[1].name, 'v')
    assert.equal((await c.query(`SELECT * FROM ${T} WHERE false`)).rowCount, 0)
  })
}

async function tTypes() {
  await withClient(async (c) => {
    const ts = new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789))
    const j = { a: [1, 2, { b: null }], c: 'd' }
    const buf = Buffer.from([0, 1, 255, 98, 105, 110])
    const r = await c.query(
      'SELECT $1::int AS i, $2::bigint AS b, $3::text AS t, $4::bytea AS by, $5::numeric AS n,' +
        ' $6::timestamptz AS ts, $7::uuid AS u, $8::json AS j, $9::jsonb AS jb, $10::int[] AS arr,' +
        ' $11::text[] AS tarr, $12::text AS nul, $13::float8 AS f, $14::bool AS bo',
      [42, '1099511627783', "héllo ☃ 'quote'", buf, '12345678901234567890.123456789', ts,
        '12345678-1234-5678-1234-567812345678', JSON.stringify(j), j, [1, 2, 3], ['x', null, 'z'],
        null, 1.5, true],
    )
    const row = r.rows[0]
    assert.equal(row.i, 42)
    assert.equal(row.b, '1099511627783') // int8 is a string in node-postgres
    assert.equal(row.t, "héllo ☃ 'quote'")
    assert.deepEqual(row.by, buf)
    assert.equal(row.n, '12345678901234567890.123456789')
    assert.equal(row.ts.getTime(), ts.getTime())
    assert.equal(row.u, '12345678-1234-5678-1234-567812345678')
    assert.deepEqual(row.j, j)
    assert.deepEqual(row.jb, j)
    assert.deepEqual(row.arr, [1, 2, 3])
    assert.deepEqual(row.tarr, ['x', null, 'z'])
    assert.equal(row.nul, null)
    assert.equal(row.f, 1.5)
    assert.equal(row.bo, true)
    const big = Buffer.alloc(256 * 1000)
    for (let i = 0; i < big.length; i++) big[i] = i % 256
    const r2 = await c.query('SELECT $1::bytea AS b, length($2::text) AS l', [big, 'x'.repeat(300000)])
    assert.deepEqual(r2.rows[0].b, big)
    assert.equal(r2.rows[0].l, 300000)
  })
}

async function tPrepared() {
  await withClient(async (c) => {
    // named queries: parsed once per connection, then Bind/Execute by name
    for (let i = 0; i < 20; i++) {
      const r = await c.query({ name: 'dbl', text: 'SELECT $1::int * 2 AS a, $2::text || \'x\' AS b', values: [i, String(i)] })
      assert.deepEqual(r.rows[0], { a: i * 2, b: `${i}x` }, `iteration ${i}`)
    }
    for (let i = 0; i < 12; i++) {
      await c.query('BEGIN')
      const r = await c.query({ name: 'inc', text: 'SELECT $1::bigint + 1 AS v', values: [i] })
      assert.equal(r.rows[0].v, String(i + 1))
      await c.query(i % 2 ? 'COMMIT' : 'ROLLBACK')
    }
    // many named statements, then reuse all of them
    for (let round = 0; round < 2; round++) {
      for (let k = 0; k < 15; k++) {
        const r = await c.query({ name: `s${k}`, text: `SELECT $1::int + ${k} AS v`, values: [round] })
        assert.equal(r.rows[0].v, round + k)
      }
    }
    // pipelined: several queries queued at once on one client
    const ps = []
    for (let i = 0; i < 30; i++) ps.push(c.query({ name: 'dbl', text: 'SELECT $1::int * 2 AS a, $2::text || \'x\' AS b', values: [i, 'p'] }))
    const rs = await Promise.all(ps)
    rs.forEach((r, i) => assert.equal(r.rows[0].a, i * 2))
    // unnamed extended-protocol queries
    for (let i = 0; i < 10; i++) {
      assert.equal((await c.query('SELECT $1::text AS t', [`u${i}`])).rows[0].t, `u${i}`)
    }
  })
}

async function tTransactions() {
  await withClient(async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS ${T}_tx (a int)`)
    await c.query('BEGIN')
    await c.query(`INSERT INTO ${T}_tx VALUES ($1)`, [1])
    await c.query('COMMIT')
    await c.query('BEGIN')
    await c.query(`INSERT INTO ${T}_tx VALUES ($1)`, [2])
    await c.query('ROLLBACK')
    await c.query('BEGIN')
    await c.query(`INSERT INTO ${T}_tx VALUES (3)`)
    await c.query('SAVEPOINT s1')
    await c.query(`INSERT INTO ${T}_tx VALUES (4)`)
    await c.query('ROLLBACK TO SAVEPOINT s1')
    await c.query('COMMIT')
    const r = await c.query(`SELECT array_agg(a ORDER BY a) AS a FROM ${T}_tx`)
    assert.deepEqual(r.rows[0].a, [1, 3])
    await c.query(`DROP TABLE ${T}_tx`)
  })
}

async function tErrorInTx() {
  await withClient(async (c) => {
    await c.query('BEGIN')
    await c.query('SELECT 1')
    await expectError(c.query('SELECT 1/0'), '22012', '1/0')
    await expectError(c.query('SELECT $1::int', [1]), '25P02', 'in aborted transaction')
    await c.query('ROLLBACK')
    assert.equal((await c.query('SELECT 2 AS v')).rows[0].v, 2)
    for (let i = 0; i < 8; i++) {
      const p = c.query({ name: 'div', text: 'SELECT 10 / $1::int AS v', values: [i % 2 ? 0 : 5] })
      if (i % 2) await expectError(p, '22012', `div ${i}`)
      else assert.equal((await p).rows[0].v, 2)
    }
    await expectError(c.query('SELECT * FROM no_such_table_xyz WHERE a = $1', [1]), '42P01', 'parse error')
    // a named statement whose Parse fails, then the same name with a good text
    await expectError(c.query({ name: 'bad', text: 'SELECT nope FROM no_such_table_xyz', values: [] }), '42P01', 'named parse error')
    assert.equal((await c.query('SELECT 3 AS v')).rows[0].v, 3)
  })
}

async function tCopy() {
  await withClient(async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${T}_c; CREATE TABLE ${T}_c (a int, b text)`)
    const n = 5000
    const lines = []
    for (let i = 0; i < n; i++) lines.push(`${i}\trow ${i}\n`)
    await pipeline(Readable.from(lines), c.query(copyFrom(`COPY ${T}_c (a, b) FROM STDIN`)))
    const r = await c.query(`SELECT count(*)::int AS n, sum(a)::int AS s FROM ${T}_c`)
    assert.deepEqual(r.rows[0], { n, s: (n * (n - 1)) / 2 })
    const chunks = []
    await pipeline(
      c.query(copyTo(`COPY (SELECT a, b FROM ${T}_c ORDER BY a) TO STDOUT`)),
      new Writable({ write(ch, _e, cb) { chunks.push(ch); cb() } }),
    )
    const out = Buffer.concat(chunks).toString().split('\n').filter((l) => l)
    assert.equal(out.length, n)
    assert.equal(out[7], '7\trow 7')
    // bad data: error, connection still usable
    await assert.rejects(
      pipeline(Readable.from(['1\tx\n', 'nope\ty\n']), c.query(copyFrom(`COPY ${T}_c (a, b) FROM STDIN`))),
      (e) => e.code === '22P02',
    )
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_c`)).rows[0].n, n)
    await c.query(`DROP TABLE ${T}_c`)
  })
}

async function tListenNotify() {
  const chan = `nchan_${TAG}`
  await withClient(async (listener) => {
    await withClient(async (notifier) => {
      const got = []
      listener.on('notification', (m) => got.push([m.channel, m.payload]))
      await listener.query(`LISTEN ${chan}`)
      await notifier.query(`NOTIFY ${chan}, 'one'`)
      await notifier.query('SELECT pg_notify($1, $2)', [chan, 'two'])
      for (let i = 0; i < 100 && got.length < 2; i++) await sleep(100)
      assert.deepEqual(got, [[chan, 'one'], [chan, 'two']])
      await listener.query(`UNLISTEN ${chan}`)
      assert.equal((await listener.query('SELECT 1 AS v')).rows[0].v, 1)
    })
  })
}

async function tSettings() {
  await withClient(async (c) => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await c.query("SELECT current_setting('application_name') AS a")).rows[0].a, 'node-drv')
      assert.equal((await c.query('SHOW statement_timeout')).rows[0].statement_timeout, '12s')
    }
    await c.query("SET TimeZone = 'Asia/Tokyo'")
    for (let i = 0; i < 5; i++) {
      await c.query('BEGIN')
      assert.equal((await c.query('SHOW TimeZone')).rows[0].TimeZone, 'Asia/Tokyo')
      await c.query('COMMIT')
      const r = await c.query("SELECT to_char('2024-01-01 00:00+00'::timestamptz, 'HH24') AS h")
      assert.equal(r.rows[0].h, '09')
    }
  }, { application_name: 'node-drv', statement_timeout: 12000 })
}

async function tConcurrency() {
  const nClients = 12
  const nIter = 25
  const worker = async (k) => withClient(async (c) => {
    for (let i = 0; i < nIter; i++) {
      const v = k * 1000 + i
      const r = await c.query({ name: 'w', text: 'SELECT $1::int + 1 AS a, $2::text AS b', values: [v, `w${k}`] })
      assert.deepEqual(r.rows[0], { a: v + 1, b: `w${k}` }, `client ${k} iteration ${i}`)
      if (i % 5 === 0) {
        await c.query('BEGIN')
        const r2 = await c.query({ name: 'w3', text: 'SELECT $1::int * 3 AS v', values: [v] })
        assert.equal(r2.rows[0].v, v * 3, `client ${k} tx ${i}`)
        await c.query('COMMIT')
      }
    }
  })
  const res = await Promise.allSettled([...Array(nClients).keys()].map(worker))
  const errs = res.map((r, k) => (r.status === 'rejected' ? `client ${k}: ${r.reason}` : null)).filter((x) => x)
  assert.deepEqual(errs, [])
}

async function tCursor() {
  await withClient(async (c) => {
    await c.query('BEGIN')
    const cur = c.query(new Cursor('SELECT g FROM generate_series(1, 100) g WHERE g > $1', [0]))
    const first = await cur.read(10)
    assert.equal(first.length, 10)
    assert.equal(first[0].g, 1)
    let total = first.length
    for (;;) {
      const rows = await cur.read(7)
      if (rows.length === 0) break
      total += rows.length
    }
    assert.equal(total, 100)
    await cur.close()
    assert.equal((await c.query('SELECT 5 AS v')).rows[0].v, 5)
    await c.query('COMMIT')
    // a cursor outside an explicit transaction (unnamed portal, Execute with a row limit)
    const cur2 = c.query(new Cursor('SELECT generate_series(1, 20) AS g'))
    assert.equal((await cur2.read(5)).length, 5)
    assert.equal((await cur2.read(100)).length, 15)
    await cur2.close()
    assert.equal((await c.query('SELECT 6 AS v')).rows[0].v, 6)
  })
}

async function tCancel() {
  await withClient(async (c) => {
    const q = c.query('SELECT pg_sleep(20)')
    await sleep(500)
    const canceller = new pg.Client(CFG)
    canceller.cancel(c, c.activeQuery)
    const t0 = Date.now()
    await expectError(q, '57014', 'cancelled query')
    assert.ok(Date.now() - t0 < 10000, 'cancel took too long')
    assert.equal((await c.query('SELECT $1::text AS v', ['alive'])).rows[0].v, 'alive')
    // statement_timeout
    await c.query("SET statement_timeout = '300ms'")
    await expectError(c.query('SELECT pg_sleep(5)'), '57014', 'statement_timeout')
    await c.query('RESET statement_timeout')
    assert.equal((await c.query('SELECT 1 AS v')).rows[0].v, 1)
  })
}

async function tPool() {
  // pg.Pool, as most applications use it. In session mode each pooled client holds one of the
  // proxy's 2 server connections for as long as it stays open (pg.Pool keeps idle clients 10 s),
  // so a pg.Pool larger than the proxy's pool would wait for a server connection at login.
  const pool = new pg.Pool({ ...CFG, max: TARGET === 'session' ? 2 : 5 })
  try {
    const rs = await Promise.all([...Array(40).keys()].map((i) => pool.query('SELECT $1::int AS v', [i])))
    rs.forEach((r, i) => assert.equal(r.rows[0].v, i))
  } finally {
    await pool.end()
  }
}

async function tCursorTx() {
  await withClient(async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${T}_cu; CREATE TABLE ${T}_cu (a int PRIMARY KEY, b text)`)
    await c.query('BEGIN')
    await c.query(`INSERT INTO ${T}_cu SELECT g, 'v' || g FROM generate_series(1, 200) g`)
    // several cursors one after the other in one transaction, with statements between them
    for (let k = 0; k < 3; k++) {
      const cur = c.query(new Cursor(`SELECT a, b FROM ${T}_cu WHERE a > $1 ORDER BY a`, [k * 10]))
      const a = await cur.read(3)
      const b = await cur.read(4)
      assert.deepEqual([...a, ...b].map((r) => r.a), [1, 2, 3, 4, 5, 6, 7].map((x) => x + k * 10), `cursor ${k}`)
      await cur.close() // closed before the end
      const r = await c.query({ name: 'cu_upd', text: `UPDATE ${T}_cu SET b = $1 WHERE a = $2`, values: [`k${k}`, k + 1] })
      assert.equal(r.rowCount, 1)
    }
    // a cursor read to the end in small steps, over rows this transaction changed
    const cur = c.query(new Cursor(`SELECT b FROM ${T}_cu WHERE a <= $1 ORDER BY a`, [5], { rowMode: 'array' }))
    const all = []
    for (let rows = await cur.read(2); rows.length; rows = await cur.read(2)) all.push(...rows.map((r) => r[0]))
    assert.deepEqual(all, ['k0', 'k1', 'k2', 'v4', 'v5'])
    await cur.close()
    await c.query('COMMIT')
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_cu`)).rows[0].n, 200)
    // an error in the middle of a cursor inside a transaction: the transaction is aborted
    await c.query('BEGIN')
    const bad = c.query(new Cursor('SELECT 10 / (50 - g) AS v FROM generate_series(1, 100) g'))
    assert.equal((await bad.read(20)).length, 20)
    await expectError(bad.read(100), '22012', 'error in cursor')
    await expectError(c.query('SELECT 1'), '25P02', 'after cursor error')
    await c.query('ROLLBACK')
    assert.equal((await c.query('SELECT $1::int AS v', [8])).rows[0].v, 8)
    await c.query(`DROP TABLE ${T}_cu`)
  })
}

async function tNamedAcrossClients() {
  // the same statement name with different texts on different connections, and the same name
  // and text on many pooled clients
  await withClient(async (a) => {
    await withClient(async (b) => {
      for (let i = 0; i < 6; i++) {
        const [ra, rb] = await Promise.all([
          a.query({ name: 'same', text: 'SELECT $1::int + 1 AS v', values: [i] }),
          b.query({ name: 'same', text: "SELECT $1::text || '-b' AS v", values: [String(i)] }),
        ])
        assert.equal(ra.rows[0].v, i + 1, `client a ${i}`)
        assert.equal(rb.rows[0].v, `${i}-b`, `client b ${i}`)
      }
    })
  })
  const pool = new pg.Pool({ ...CFG, max: TARGET === 'session' ? 2 : 6 })
  try {
    const work = async (i) => {
      const c = await pool.connect()
      try {
        await c.query('BEGIN')
        const r = await c.query({ name: 'pooled', text: 'SELECT $1::int * 7 AS v, pg_backend_pid() AS p', values: [i] })
        assert.equal(r.rows[0].v, i * 7)
        await c.query('SAVEPOINT s')
        await expectError(c.query({ name: 'pooled_err', text: 'SELECT 1 / $1::int AS v', values: [0] }), '22012', `pool error ${i}`)
        await c.query('ROLLBACK TO SAVEPOINT s')
        const r2 = await c.query({ name: 'pooled', text: 'SELECT $1::int * 7 AS v, pg_backend_pid() AS p', values: [i + 1] })
        assert.equal(r2.rows[0].v, (i + 1) * 7)
        await c.query(i % 2 ? 'COMMIT' : 'ROLLBACK')
      } finally {
        c.release()
      }
    }
    await Promise.all([...Array(30).keys()].map(work))
  } finally {
    await pool.end()
  }
}

async function tPipelineErrors() {
  await withClient(async (c) => {
    // queued queries (each its own Sync): the failing one does not affect the others
    const ps = [
      c.query('SELECT $1::int AS v', [1]),
      c.query('SELECT 1 / $1::int AS v', [0]),
      c.query({ name: 'pe', text: 'SELECT $1::text AS v', values: ['three'] }),
      c.query('SELECT nope FROM no_such_table_xyz'),
      c.query({ name: 'pe', text: 'SELECT $1::text AS v', values: ['five'] }),
    ]
    const rs = await Promise.allSettled(ps)
    assert.equal(rs[0].value.rows[0].v, 1)
    assert.equal(rs[1].reason.code, '22012')
    assert.equal(rs[2].value.rows[0].v, 'three')
    assert.equal(rs[3].reason.code, '42P01')
    assert.equal(rs[4].value.rows[0].v, 'five')
    // the same inside a transaction: everything after the error fails with 25P02
    await c.query('BEGIN')
    const ts = await Promise.allSettled([
      c.query('SELECT $1::int AS v', [1]),
      c.query('SELECT 1 / $1::int AS v', [0]),
      c.query({ name: 'pe', text: 'SELECT $1::text AS v', values: ['x'] }),
      c.query('SELECT 4 AS v'),
    ])
    assert.equal(ts[0].value.rows[0].v, 1)
    assert.equal(ts[1].reason.code, '22012')
    assert.equal(ts[2].reason.code, '25P02')
    assert.equal(ts[3].reason.code, '25P02')
    await c.query('ROLLBACK')
    // a simple multi-statement query failing in its second statement: the first is rolled back
    await c.query(`CREATE TABLE IF NOT EXISTS ${T}_pe (a int)`)
    await expectError(c.query(`INSERT INTO ${T}_pe VALUES (1); SELECT 1/0; INSERT INTO ${T}_pe VALUES (2)`), '22012', 'multi-statement')
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_pe`)).rows[0].n, 0)
    await c.query(`DROP TABLE ${T}_pe`)
  })
}

async function tCopyTx() {
  await withClient(async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${T}_ct; CREATE TABLE ${T}_ct (a int PRIMARY KEY, b text)`)
    await c.query('BEGIN')
    await c.query(`INSERT INTO ${T}_ct VALUES ($1, $2)`, [-1, 'before'])
    await pipeline(Readable.from([...Array(500).keys()].map((i) => `${i},"c ${i}"\n`)),
      c.query(copyFrom(`COPY ${T}_ct FROM STDIN (FORMAT csv)`)))
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_ct`)).rows[0].n, 501)
    await c.query('ROLLBACK')
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_ct`)).rows[0].n, 0)
    await c.query('BEGIN')
    await pipeline(Readable.from(['1,a\n', '2,b\n']), c.query(copyFrom(`COPY ${T}_ct FROM STDIN (FORMAT csv)`)))
    await c.query('SAVEPOINT s')
    await assert.rejects(pipeline(Readable.from(['3,c\n', '1,dup\n']), c.query(copyFrom(`COPY ${T}_ct FROM STDIN (FORMAT csv)`))),
      (e) => e.code === '23505')
    await c.query('ROLLBACK TO SAVEPOINT s')
    const chunks = []
    await pipeline(c.query(copyTo(`COPY (SELECT a FROM ${T}_ct ORDER BY a) TO STDOUT`)),
      new Writable({ write(ch, _e, cb) { chunks.push(ch); cb() } }))
    assert.equal(Buffer.concat(chunks).toString(), '1\n2\n')
    await c.query('COMMIT')
    assert.equal((await c.query(`SELECT count(*)::int AS n FROM ${T}_ct`)).rows[0].n, 2)
    await c.query(`DROP TABLE ${T}_ct`)
  })
}

async function tTypeParsers() {
  const types = {
    getTypeParser: (oid, format) => {
      if (oid === 20) return (v) => BigInt(v) // int8
      if (oid === 1700) return (v) => Number(v) // numeric
      return pg.types.getTypeParser(oid, format)
    },
  }
  await withClient(async (c) => {
    for (let i = 0; i < 3; i++) {
      const r = await c.query({ text: 'SELECT $1::bigint * 2 AS b, $2::numeric / 4 AS n, count(*) AS c FROM generate_series(1, 3)', values: ['4611686018427387903', 3], types })
      assert.equal(r.rows[0].b, 9223372036854775806n)
      assert.equal(r.rows[0].n, 0.75)
      assert.equal(r.rows[0].c, 3n)
    }
    // a query with many parameters
    const vals = [...Array(2000).keys()]
    const ph = vals.map((_, i) => `$${i + 1}::int`).join(',')
    const r = await c.query(`SELECT sum(x)::int AS s FROM unnest(ARRAY[${ph}]) x`, vals)
    assert.equal(r.rows[0].s, (1999 * 2000) / 2)
    // an extended-protocol query without parameters
    const r2 = await c.query({ text: 'SELECT 42 AS v', queryMode: 'extended' })
    assert.equal(r2.rows[0].v, 42)
  })
  // binary results for every column (only types whose binary parsers pg-types gets right:
  // its float8, timestamptz, bytea and negative int2 binary parsers are off)
  await withClient(async (c) => {
    for (let i = 0; i < 3; i++) {
      const r = await c.query('SELECT $1::int4 AS i, $2::text AS t, $3::bool AS b, $4::int2 AS s, $5::int4[] AS a',
        [i, 'bin', true, 7, [1, 2, i]])
      assert.deepEqual(r.rows[0], { i, t: 'bin', b: true, s: 7, a: [1, 2, i] })
    }
  }, { binary: true })
}

async function tCleanup() {
  await withClient(async (c) => c.query(`DROP TABLE IF EXISTS ${T}`))
}

async function main() {
  console.log(`node-postgres ${require('pg/package.json').version}, node ${process.version}, target ${TARGET} ${CFG.host}:${CFG.port}`)
  await check('connect (SCRAM)', tConnect)
  await check('simple queries (multi-statement)', tSimple)
  await check('parameters of many types', tTypes)
  await check('named prepared statements, pipelined queries', tPrepared)
  await check('transactions: commit, rollback, savepoint', tTransactions)
  await check('error in transaction, rollback, continue', tErrorInTx)
  await check('COPY in/out (pg-copy-streams)', tCopy)
  await check('LISTEN/NOTIFY', tListenNotify)
  await check('settings (startup and SET)', tSettings)
  await check('12 concurrent clients, named statements', tConcurrency, 120000)
  await check('cursors (pg-cursor: portals with row limits)', tCursor)
  await check('query cancellation', tCancel)
  await check('pg.Pool', tPool)
  await check('pg-cursor in a transaction: several cursors, early close, error', tCursorTx)
  await check('named statements: same name on two clients, pooled clients, savepoints', tNamedAcrossClients, 120000)
  await check('errors in the middle of queued queries (pipeline)', tPipelineErrors)
  await check('COPY in a transaction: rollback, savepoint, copy out', tCopyTx)
  await check('type parsers, 2000 parameters, binary results', tTypeParsers)
  await check('cleanup', tCleanup)
  console.log(`node-postgres ${TARGET}: ${passed} passed, ${failed} failed`)
  process.exit(failed || !passed ? 1 : 0)
}

main().catch((e) => {
  console.log(`FAIL node-postgres ${TARGET}: unexpected: ${e && e.stack}`)
  process.exit(1)
})
