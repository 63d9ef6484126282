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
  await check('cleanup', tCleanup)
  console.log(`node-postgres ${TARGET}: ${passed} passed, ${failed} failed`)
  process.exit(failed || !passed ? 1 : 0)
}

main().catch((e) => {
  console.log(`FAIL node-postgres ${TARGET}: unexpected: ${e && e.stack}`)
  process.exit(1)
})
