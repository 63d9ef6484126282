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

// ------------------------------------------------------------------ sharded table (sharded target)
// drv_contacts is sharded by user_id (hash, two shards: scripts/test-drivers). Shared by every
// driver run: this run uses its own key range and deletes its rows at the start and the end.
// node-postgres sends parameters as text and asks for text results. bigint comes back as a string.
const SH = 'drv_contacts'
const SH_USERS = 20
const SH_LO = 30000000000 + (process.pid % 4000000) * 100
const SH_HI = SH_LO + SH_USERS - 1
const SH_RANGE = `user_id BETWEEN ${SH_LO} AND ${SH_HI}`
const shRows = new Map() // `${u}/${id}` -> [u, id, name, n]
const shShard = new Map() // u -> shard name

function shExpected() {
  return [...shRows.values()].sort((x, y) => x[0] - y[0] || x[1] - y[1]).map((r) => r.join(','))
}
async function shAll(c) {
  const r = await c.query(`SELECT user_id, id, name, n FROM ${SH} WHERE ${SH_RANGE} ORDER BY user_id, id`)
  return r.rows.map((x) => [x.user_id, x.id, x.name, x.n].join(','))
}
function shTwoUsers() {
  const a = SH_LO
  for (let u = SH_LO; u <= SH_HI; u++) if (shShard.get(u) !== shShard.get(a)) return [a, u]
  throw new Error('all users on one shard')
}

async function tShSetup() {
  await withClient(async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS ${SH} (id bigint, user_id bigint NOT NULL, name text, n int, PRIMARY KEY (user_id, id))`)
    await c.query(`DELETE FROM ${SH} WHERE ${SH_RANGE}`)
    for (let k = 0; k < SH_USERS; k++) {
      const u = SH_LO + k
      for (const i of [1, 2, 3]) {
        const r = await c.query({ name: 'sh_ins', text: `INSERT INTO ${SH} (id, user_id, name, n) VALUES ($1, $2, $3, $4)`, values: [i, u, `c${u}_${i}`, k * 10 + i] })
        assert.equal(r.rowCount, 1)
        shRows.set(`${u}/${i}`, [u, i, `c${u}_${i}`, k * 10 + i])
      }
    }
    for (const shard of ['s0', 's1']) {
      const r = await c.query(`/* pgproxy: shard=${shard} */ SELECT user_id FROM ${SH} WHERE ${SH_RANGE} AND id = 1`)
      for (const x of r.rows) {
        assert.ok(!shShard.has(Number(x.user_id)), `user ${x.user_id} on both shards`)
        shShard.set(Number(x.user_id), shard)
      }
    }
    assert.equal(shShard.size, SH_USERS, 'users placed')
    assert.equal(new Set(shShard.values()).size, 2, 'both shards hold rows')
    assert.deepEqual(await shAll(c), shExpected())
  })
}

async function tShByKey() {
  await withClient(async (c) => {
    for (let u = SH_LO; u <= SH_HI; u++) {
      const r = await c.query({ name: 'sh_sel', text: `SELECT id, name, n FROM ${SH} WHERE user_id = $1 ORDER BY id`, values: [u] })
      assert.deepEqual(r.rows.map((x) => [Number(u), Number(x.id), x.name, x.n].join(',')),
        [1, 2, 3].map((i) => shRows.get(`${u}/${i}`).join(',')), `user ${u}`)
      const up = await c.query({ name: 'sh_up', text: `UPDATE ${SH} SET n = n + 100 WHERE user_id = $1 AND id = $2`, values: [u, 1] })
      assert.equal(up.rowCount, 1)
      shRows.get(`${u}/1`)[3] += 100
      if ((u - SH_LO) % 2 === 0) {
        const del = await c.query({ name: 'sh_del', text: `DELETE FROM ${SH} WHERE user_id = $1 AND id = $2`, values: [u, 3] })
        assert.equal(del.rowCount, 1)
        shRows.delete(`${u}/3`)
      }
    }
    assert.deepEqual(await shAll(c), shExpected())
  })
}

async function tShTx() {
  const [a, b] = shTwoUsers()
  await withClient(async (c) => {
    const up = (u, name) => c.query({ name: 'sh_tx_up', text: `UPDATE ${SH} SET name = $1 WHERE user_id = $2 AND id = 1`, values: [name, u] })
    // one user: commit, rollback
    await c.query('BEGIN'); await up(a, 'one'); await c.query('COMMIT')
    shRows.get(`${a}/1`)[2] = 'one'
    await c.query('BEGIN'); await up(a, 'one-rb'); await c.query('ROLLBACK')
    // two users on two shards (2PC): commit, rollback
    await c.query('BEGIN'); await up(a, 'two'); await up(b, 'two')
    const r = await c.query({ text: `SELECT name FROM ${SH} WHERE user_id = $1 AND id = 1`, values: [a] })
    assert.equal(r.rows[0].name, 'two', 'first shard read again')
    await c.query('COMMIT')
    shRows.get(`${a}/1`)[2] = 'two'
    shRows.get(`${b}/1`)[2] = 'two'
    await c.query('BEGIN'); await up(a, 'two-rb'); await up(b, 'two-rb'); await c.query('ROLLBACK')
    assert.deepEqual(await shAll(c), shExpected())
  })
}

async function tShMerged() {
  const rows = [...shRows.values()]
  const ns = rows.map((r) => r[3])
  await withClient(async (c) => {
    let r = await c.query(`SELECT count(*) AS c, sum(n) AS s, min(n) AS mi, max(n) AS ma FROM ${SH} WHERE ${SH_RANGE}`)
    assert.deepEqual(r.rows[0], { c: String(rows.length), s: String(ns.reduce((x, y) => x + y, 0)), mi: Math.min(...ns), ma: Math.max(...ns) })
    for (let i = 0; i < 6; i++) {
      r = await c.query({ name: 'sh_cnt', text: `SELECT count(*) AS c FROM ${SH} WHERE user_id BETWEEN $1 AND $2`, values: [SH_LO + i, SH_HI] })
      assert.equal(r.rows[0].c, String(rows.filter((x) => x[0] >= SH_LO + i).length), `count from ${i}`)
    }
    const top = [...rows].sort((x, y) => y[3] - x[3] || x[0] - y[0] || x[1] - y[1])
    r = await c.query({ name: 'sh_top', text: `SELECT user_id, id, n FROM ${SH} WHERE ${SH_RANGE} ORDER BY n DESC, user_id, id LIMIT $1`, values: [5] })
    assert.deepEqual(r.rows.map((x) => [x.user_id, x.id, x.n].join(',')), top.slice(0, 5).map((x) => [x[0], x[1], x[3]].join(',')))
    const g = new Map()
    for (const [u, , , n] of rows) { const v = g.get(u) || [0, 0]; v[0]++; v[1] += n; g.set(u, v) }
    r = await c.query(`SELECT user_id, count(*) AS c, sum(n) AS s FROM ${SH} WHERE ${SH_RANGE} GROUP BY user_id ORDER BY user_id`)
    assert.deepEqual(r.rows.map((x) => [x.user_id, x.c, x.s].join(',')), [...g.entries()].sort((x, y) => x[0] - y[0]).map(([u, v]) => [u, ...v].join(',')))
    // hints
    const [a] = shTwoUsers()
    const onA = rows.filter((x) => shShard.get(x[0]) === shShard.get(a)).length
    r = await c.query(`/* pgproxy: shard_key=${a} */ SELECT count(*) AS c FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(r.rows[0].c, String(onA), 'comment hint')
    await c.query(`SET pgproxy.shard_key = ${a}`)
    r = await c.query(`SELECT count(*) AS c FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(r.rows[0].c, String(onA), 'SET pgproxy.shard_key')
    await c.query('RESET pgproxy.shard_key')
    r = await c.query(`SELECT count(*) AS c FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(r.rows[0].c, String(rows.length), 'after RESET')
    // a fan-out read in a transaction: merged, and after a write it sees the write, as on
    // one PostgreSQL; INSERT without the key and window functions are refused
    await c.query('BEGIN')
    await c.query({ text: `SELECT 1 FROM ${SH} WHERE user_id = $1`, values: [a] })
    r = await c.query(`SELECT count(*) AS c FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(r.rows[0].c, String(rows.length), 'fan-out read in a transaction')
    const onKey = rows.filter((x) => x[0] === a).length
    await c.query({ text: `UPDATE ${SH} SET n = n + 1000 WHERE user_id = $1`, values: [a] })
    r = await c.query(`SELECT sum(n) AS s FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(Number(r.rows[0].s), ns.reduce((x, y) => x + y, 0) + 1000 * onKey, 'fan-out read after a write sees it')
    await c.query('ROLLBACK')
    await expectError(c.query({ text: `INSERT INTO ${SH} (id, name, n) VALUES ($1, $2, $3)`, values: [99, 'nokey', 1] }), '0A000', 'INSERT without the key')
    await expectError(c.query(`SELECT user_id, row_number() OVER (ORDER BY n) FROM ${SH} WHERE ${SH_RANGE}`), '0A000', 'window function')
    assert.deepEqual(await shAll(c), shExpected(), 'usable after the refusals')
  })
}

async function tShCopy() {
  await withClient(async (c) => {
    const copy = `COPY ${SH} (id, user_id, name, n) FROM STDIN`
    const lines = []
    for (let u = SH_LO; u <= SH_HI; u++) lines.push(`4\t${u}\tcopied ${u}\t${u - SH_LO}\n`)
    // pgproxy sends each row to its user's shard; the shards commit together
    await pipeline(Readable.from(lines), c.query(copyFrom(copy)))
    for (let u = SH_LO; u <= SH_HI; u++) shRows.set(`${u}/4`, [u, 4, `copied ${u}`, u - SH_LO])
    let placed = 0
    for (const shard of ['s0', 's1']) {
      const r = await c.query(`/* pgproxy: shard=${shard} */ SELECT user_id FROM ${SH} WHERE ${SH_RANGE} AND id = 4`)
      for (const x of r.rows) assert.equal(shShard.get(Number(x.user_id)), shard, `copied row of user ${x.user_id}`)
      placed += r.rows.length
    }
    assert.equal(placed, SH_USERS, 'every copied row on one shard')
    // COPY TO of the whole table: every shard's rows put together
    const chunks = []
    await pipeline(c.query(copyTo(`COPY ${SH} (user_id, id) TO STDOUT`)), new Writable({ write(ch, _e, cb) { chunks.push(ch); cb() } }))
    const mine = Buffer.concat(chunks).toString().split('\n').filter((l) => l).map((l) => l.split('\t').map(Number))
      .filter(([u, i]) => u >= SH_LO && u <= SH_HI && i === 4)
    assert.equal(mine.length, SH_USERS, 'COPY TO: every copied row once')
    // a duplicate on one shard: nothing of that COPY is written on any shard
    await assert.rejects(
      pipeline(Readable.from([`5\t${SH_LO}\tnew\t0\n`, `5\t${SH_HI}\tnew\t0\n`, `4\t${SH_HI}\tdup\t0\n`]), c.query(copyFrom(copy))),
      (e) => e.code === '23505',
    )
    assert.deepEqual(await shAll(c), shExpected())
  })
}

async function tShCleanup() {
  await withClient(async (c) => {
    const r = await c.query(`DELETE FROM ${SH} WHERE ${SH_RANGE}`)
    assert.equal(r.rowCount, shRows.size)
  })
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
  if (TARGET === 'sharded') {
    await check('sharded table: inserts by key (named statement), placement on both shards', tShSetup)
    if (shShard.size === SH_USERS) {
      await check('sharded table: reads, UPDATE, DELETE by key (named statements)', tShByKey)
      await check('sharded table: transactions on one user and on two shards (2PC)', tShTx)
      await check('sharded table: keyless reads merged, hints, refusals (0A000)', tShMerged)
      await check('sharded table: COPY FROM STDIN rows to their shards, COPY TO of every shard (pg-copy-streams)', tShCopy)
    }
    await check('sharded table: cleanup', tShCleanup)
  }
  await check('cleanup', tCleanup)
  console.log(`node-postgres ${TARGET}: ${passed} passed, ${failed} failed`)
  process.exit(failed || !passed ? 1 : 0)
}

main().catch((e) => {
  console.log(`FAIL node-postgres ${TARGET}: unexpected: ${e && e.stack}`)
  process.exit(1)
})
