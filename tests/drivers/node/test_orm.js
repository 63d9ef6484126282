// ORMs and query builders (knex, Sequelize, TypeORM; all on node-postgres) through pgproxy (or
// PostgreSQL directly): see scripts/test-drivers. What a new user's application does through them:
// schema building / sync / synchronize (catalog introspection), CRUD with RETURNING, transactions,
// savepoints, isolation levels, streams, pools with session settings, migrations, error codes; and
// on drv_contacts (sharded by user_id on the sharded target) models keyed by user_id, reads merged
// across shards, writes without the key refused (0A000), rows never on the wrong shard.
//
// Prints one PASS/FAIL line per check; exits 1 if any check failed.
// Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET.
// ORM_KEEP=1 leaves this run's tables in place (to compare the nodes with `pgproxy verify`);
// ORM_SKIP=REGEX skips the checks whose name matches (by hand, e.g. ORM_SKIP=findOrCreate).
// Needs (npm, tests/drivers/node): knex, pg-query-stream (knex's .stream()), sequelize, typeorm,
// reflect-metadata.
'use strict'

require('reflect-metadata')
const assert = require('node:assert/strict')
const knexLib = require('knex')
const { Sequelize, DataTypes, Op, Transaction, QueryTypes } = require('sequelize')
const typeorm = require('typeorm')

const TARGET = process.env.DRIVER_TARGET || 'unknown'
const SHARDED = TARGET === 'sharded'
const CFG = {
  host: process.env.DRIVER_HOST || '127.0.0.1',
  port: Number(process.env.DRIVER_PORT || 6432),
  user: process.env.DRIVER_USER || 'app',
  password: process.env.DRIVER_PASSWORD || 'secret',
  database: process.env.DRIVER_DB || 'app',
}
const TAG = `${TARGET.slice(0, 3)}_${process.pid}`
const P = `drv_orm_${TAG}` // this run's tables: P_k* (knex), P_s* (Sequelize), P_t* (TypeORM)
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

let passed = 0
let failed = 0

const SKIP = process.env.ORM_SKIP ? new RegExp(process.env.ORM_SKIP) : null

async function check(name, fn, timeoutMs = 60000) {
  if (SKIP && SKIP.test(name)) {
    console.log(`SKIP node-orm ${TARGET}: ${name} (ORM_SKIP)`)
    return
  }
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
    console.log(`PASS node-orm ${TARGET}: ${name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`)
  } catch (e) {
    failed++
    const code = /^[0-9A-Z]{5}$/.test(String(sqlstate(e))) ? sqlstate(e) : undefined
    const inner = e && (e.parent || e.original || e.driverError)
    const detail = (code ? ` [SQLSTATE ${code}]` : '') + (inner && inner.message && inner.message !== e.message ? ` [server: ${inner.message}]` : '') +
      (e && e.sql ? ` [sql: ${String(e.sql).slice(0, 600)}]` : '')
    const head = e && e.stack && e.message && !String(e.stack).includes(e.message) ? `${e.name}: ${e.message}\n` : ''
    console.log(`FAIL node-orm ${TARGET}: ${name}:${detail} ${head}${e && e.stack ? e.stack : e}`)
  } finally {
    clearTimeout(timer)
  }
}

// the SQLSTATE of an error from any of the three (Sequelize wraps it in .parent / .original,
// TypeORM's QueryFailedError carries the driver error's fields and .driverError)
function sqlstate(e) {
  return (e && (e.code || (e.parent && e.parent.code) || (e.original && e.original.code) || (e.driverError && e.driverError.code))) || undefined
}
// On the sharded target, Sequelize's findOrCreate calls a plpgsql function it creates in
// pg_temp: pgproxy cannot see which shard's rows that function writes, and refuses the call
// (0A000, with how to add a shard hint) rather than run it on a shard it may not belong to.
async function sequelizeFunctionCall(run) {
  if (!SHARDED) return run()
  const e = await expectError(run(), '0A000', 'call of a pg_temp function on the sharded target')
  assert.match(e.message, /not a PostgreSQL built-in/)
}

async function expectError(p, code, what) {
  try {
    await p
  } catch (e) {
    assert.equal(sqlstate(e), code, `${what}: SQLSTATE (error: ${e && e.message})`)
    return e
  }
  assert.fail(`${what}: no error`)
}
const near = (d, what) => assert.ok(d instanceof Date && Math.abs(d.getTime() - Date.now()) < 120000, `${what}: ${d} is not about now`)
const sorted = (a) => [...a].sort()

// ------------------------------------------------------------------ knex

const K = { users: `${P}_kusers`, posts: `${P}_kposts`, big: `${P}_kbig`, mig: `${P}_kmig`, migT: `${P}_kmigt` }

async function withKnex(fn, pool, extra = {}) {
  pool = pool || { min: 0, max: 2 }
  const k = knexLib({ client: 'pg', connection: { ...CFG }, pool, acquireConnectionTimeout: 30000, ...extra })
  try {
    return await fn(k)
  } finally {
    await k.destroy()
  }
}

async function kSchema() {
  await withKnex(async (k) => {
    await k.schema.dropTableIfExists(K.posts)
    await k.schema.dropTableIfExists(K.users)
    await k.schema.createTable(K.users, (t) => {
      t.increments('id')
      t.uuid('uid').notNullable().defaultTo(k.raw('gen_random_uuid()'))
      t.string('email', 100).notNullable().unique()
      t.jsonb('profile')
      t.timestamp('seen_at', { useTz: true }).notNullable().defaultTo(k.fn.now())
      t.timestamps(true, true)
    })
    await k.schema.createTable(K.posts, (t) => {
      t.bigIncrements('id')
      t.integer('user_id').notNullable().references('id').inTable(K.users).onDelete('CASCADE')
      t.string('title').notNullable()
      t.integer('score').notNullable().defaultTo(0)
      t.unique(['user_id', 'title'])
      t.index(['score'])
    })
    assert.equal(await k.schema.hasTable(K.users), true)
    assert.equal(await k.schema.hasTable(`${P}_nope`), false)
    assert.equal(await k.schema.hasColumn(K.posts, 'score'), true)
    const ci = await k(K.users).columnInfo()
    assert.equal(ci.id.type, 'integer')
    assert.match(String(ci.id.defaultValue), /^nextval\(/)
    assert.equal(ci.uid.type, 'uuid')
    assert.equal(ci.uid.defaultValue, 'gen_random_uuid()')
    assert.equal(ci.email.type, 'character varying')
    assert.equal(ci.email.maxLength, 100)
    assert.equal(ci.email.nullable, false)
    assert.equal(ci.profile.type, 'jsonb')
    assert.equal(ci.seen_at.type, 'timestamp with time zone')
    assert.equal(ci.seen_at.defaultValue, 'CURRENT_TIMESTAMP')
    assert.equal((await k(K.posts).columnInfo('id')).type, 'bigint')
    const fk = await k.raw(
      `SELECT conname, contype, CASE WHEN confrelid <> 0 THEN confrelid::regclass::text END AS ref, confdeltype FROM pg_constraint
        WHERE conrelid = ?::regclass ORDER BY contype, conname`, [K.posts])
    assert.deepEqual(fk.rows.map((r) => [r.contype, r.ref, r.confdeltype]),
      [['f', K.users, 'c'], ['p', null, ' '], ['u', null, ' ']])
    const ix = await k.raw('SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ? ORDER BY indexname', [K.posts])
    assert.equal(ix.rows.length, 3, JSON.stringify(ix.rows))
    assert.ok(ix.rows.some((r) => /UNIQUE INDEX .* \(user_id, title\)/.test(r.indexdef)), 'unique index')
    assert.ok(ix.rows.some((r) => /INDEX .* \(score\)/.test(r.indexdef)), 'score index')
  })
}

async function kInsertReturning() {
  await withKnex(async (k) => {
    const [one] = await k(K.users).insert({ email: 'a@x', profile: { a: 1, tags: ['x', 'y'] } })
      .returning(['id', 'uid', 'email', 'profile', 'seen_at', 'created_at'])
    assert.equal(one.id, 1)
    assert.match(one.uid, UUID_RE)
    assert.deepEqual(one.profile, { a: 1, tags: ['x', 'y'] })
    near(one.seen_at, 'seen_at')
    near(one.created_at, 'created_at')
    const many = await k(K.users).insert([2, 3, 4, 5, 6].map((i) => ({ email: `u${i}@x`, profile: { a: i, even: i % 2 === 0 } }))).returning('*')
    assert.deepEqual(many.map((r) => r.id), [2, 3, 4, 5, 6])
    assert.deepEqual(many.map((r) => r.email), ['u2@x', 'u3@x', 'u4@x', 'u5@x', 'u6@x'])
    assert.equal(new Set(many.map((r) => r.uid).concat(one.uid)).size, 6, 'distinct uuids')
    for (const r of many) near(r.created_at, 'batch created_at')
    const ids = await k(K.posts).insert([
      { user_id: 1, title: 't1', score: 10 }, { user_id: 1, title: 't2', score: 20 },
      { user_id: 2, title: 't1', score: 5 }, { user_id: 3, title: 't3', score: 40 }, { user_id: 3, title: 't4' },
    ]).returning('id')
    assert.deepEqual(ids.map((r) => r.id), ['1', '2', '3', '4', '5'], 'bigserial ids (int8 as strings)')
    // what was stored equals what RETURNING said
    const back = await k(K.users).select('id', 'uid', 'email').orderBy('id')
    assert.deepEqual(back, [one, ...many].map((r) => ({ id: r.id, uid: r.uid, email: r.email })))
    // insert without returning: the row count
    const r = await k(K.posts).insert({ user_id: 4, title: 't5', score: 1 })
    assert.equal(r.rowCount, 1)
  })
}

async function kSelect() {
  await withKnex(async (k) => {
    let r = await k(K.users).select('email').where('id', '>', 1).orderBy('id', 'desc').limit(2).offset(1)
    assert.deepEqual(r.map((x) => x.email), ['u5@x', 'u4@x'])
    r = await k(K.users).whereIn('id', [1, 3, 5]).andWhere('email', 'like', 'u%').orderBy('id').pluck('id')
    assert.deepEqual(r, [3, 5])
    r = await k(K.users).whereRaw(`profile->>'even' = ?`, ['true']).orderBy('id').pluck('email')
    assert.deepEqual(r, ['u2@x', 'u4@x', 'u6@x'])
    r = await k(K.users).where('profile', '@>', JSON.stringify({ a: 3 })).first('id', 'email')
    assert.deepEqual(r, { id: 3, email: 'u3@x' })
    r = await k(`${K.users} as u`).join(`${K.posts} as p`, 'p.user_id', 'u.id')
      .select('u.email', 'p.title', 'p.score').where('p.score', '>=', 10).orderBy([{ column: 'p.score', order: 'desc' }, 'u.email'])
    assert.deepEqual(r, [{ email: 'u3@x', title: 't3', score: 40 }, { email: 'a@x', title: 't2', score: 20 }, { email: 'a@x', title: 't1', score: 10 }])
    r = await k(K.posts).select('user_id').count('* as c').sum('score as s').max('score as m').groupBy('user_id').orderBy('user_id')
    assert.deepEqual(r, [
      { user_id: 1, c: '2', s: '30', m: 20 }, { user_id: 2, c: '1', s: '5', m: 5 },
      { user_id: 3, c: '2', s: '40', m: 40 }, { user_id: 4, c: '1', s: '1', m: 1 }])
    r = await k(`${K.users} as u`).leftJoin(`${K.posts} as p`, 'p.user_id', 'u.id').whereNull('p.id').orderBy('u.id').pluck('u.id')
    assert.deepEqual(r, [5, 6])
    const [{ n }] = await k(K.users).countDistinct('email as n')
    assert.equal(n, '6')
  })
}

async function kUpdateDelete() {
  await withKnex(async (k) => {
    assert.equal(await k(K.posts).where('user_id', 1).update({ score: k.raw('score + 1') }), 2)
    assert.equal(await k(K.posts).where('user_id', 999).update({ score: 0 }), 0)
    const upd = await k(K.users).where('id', 2).update({ profile: { a: 22 }, updated_at: k.fn.now() }, ['id', 'profile'])
    assert.deepEqual(upd, [{ id: 2, profile: { a: 22 } }])
    assert.deepEqual(await k(K.posts).where('user_id', 1).orderBy('id').pluck('score'), [11, 21])
    assert.equal(await k(K.posts).where('user_id', 4).del(), 1)
    assert.equal(await k(K.posts).where('user_id', 4).del(), 0)
    const gone = await k(K.users).where('id', 6).del(['id', 'email'])
    assert.deepEqual(gone, [{ id: 6, email: 'u6@x' }])
    // ON DELETE CASCADE through a delete of a user
    const u = (await k(K.users).insert({ email: 'cascade@x' }).returning('id'))[0].id
    await k(K.posts).insert([{ user_id: u, title: 'c1' }, { user_id: u, title: 'c2' }])
    assert.equal(await k(K.users).where({ id: u }).del(), 1)
    assert.equal((await k(K.posts).where('user_id', u).count('* as c'))[0].c, '0')
    // upsert: ON CONFLICT ... MERGE
    const up = await k(K.users).insert({ email: 'u5@x', profile: { a: 55 } }).onConflict('email').merge(['profile']).returning(['id', 'profile'])
    assert.deepEqual(up, [{ id: 5, profile: { a: 55 } }])
    const ign = await k(K.users).insert({ email: 'u5@x' }).onConflict('email').ignore().returning('id')
    assert.deepEqual(ign, [])
  })
}

async function kRaw() {
  await withKnex(async (k) => {
    let r = await k.raw("SELECT ?::int + ? AS s, ?::text AS t, ? = ANY(?::int[]) AS inarr", [1, 2, "x'y ? $1", 3, [1, 2, 3]])
    assert.deepEqual(r.rows[0], { s: 3, t: "x'y ? $1", inarr: true })
    r = await k.raw('SELECT :a::int * 2 AS a, :b::text AS b, :a::int AS again', { a: 21, b: 'named' })
    assert.deepEqual(r.rows[0], { a: 42, b: 'named', again: 21 })
    r = await k.raw('SELECT count(*)::int AS c FROM ?? WHERE ?? <= ?', [K.users, 'id', 3])
    assert.equal(r.rows[0].c, 3)
    r = await k.raw('SELECT ?::jsonb -> ? AS v, ?::timestamptz AS ts, ?::bytea AS b, ?::numeric AS n',
      [JSON.stringify({ k: [1, { z: null }] }), 'k', new Date(Date.UTC(2024, 1, 29, 1, 2, 3, 456)), Buffer.from([0, 255, 7]), '12345678901234567890.5'])
    assert.deepEqual(r.rows[0].v, [1, { z: null }])
    assert.equal(r.rows[0].ts.toISOString(), '2024-02-29T01:02:03.456Z')
    assert.deepEqual(r.rows[0].b, Buffer.from([0, 255, 7]))
    assert.equal(r.rows[0].n, '12345678901234567890.5')
    // a raw multi-statement query without bindings (simple protocol): one result per statement
    r = await k.raw(`SELECT 1 AS a; SELECT email FROM ${K.users} WHERE id = 1`)
    assert.equal(r.length, 2)
    assert.deepEqual(r[1].rows, [{ email: 'a@x' }])
  })
}

async function kTransactions() {
  await withKnex(async (k) => {
    // commit
    const id = await k.transaction(async (trx) => {
      const [{ id: i }] = await trx(K.users).insert({ email: 'tx1@x' }).returning('id')
      await trx(K.posts).insert({ user_id: i, title: 'in tx', score: 7 })
      assert.equal((await trx(K.posts).where('user_id', i).first('score')).score, 7, 'read own write')
      return i
    })
    assert.equal((await k(K.posts).where('user_id', id).first('title')).title, 'in tx')
    // rollback by throwing
    await assert.rejects(k.transaction(async (trx) => {
      await trx(K.users).insert({ email: 'tx2@x' })
      throw new Error('boom')
    }), /boom/)
    assert.equal((await k(K.users).where('email', 'tx2@x').count('* as c'))[0].c, '0')
    // nested transactions = savepoints: the inner one rolls back, the outer commits
    await k.transaction(async (trx) => {
      await trx(K.users).insert({ email: 'outer@x' })
      await assert.rejects(trx.transaction(async (t2) => {
        await t2(K.users).insert({ email: 'inner@x' })
        await t2(K.users).insert({ email: 'outer@x' }) // 23505 inside the savepoint
      }), (e) => e.code === '23505')
      await trx.transaction(async (t2) => {
        await t2(K.users).insert({ email: 'inner2@x' })
        await assert.rejects(t2.transaction(async (t3) => {
          await t3(K.users).insert({ email: 'inner3@x' })
          throw new Error('rollback inner3')
        }), /inner3/)
      })
      const e = await trx(K.users).whereIn('email', ['outer@x', 'inner@x', 'inner2@x', 'inner3@x']).orderBy('email').pluck('email')
      assert.deepEqual(e, ['inner2@x', 'outer@x'], 'inside, after the savepoints')
    })
    assert.deepEqual(await k(K.users).whereIn('email', ['outer@x', 'inner@x', 'inner2@x', 'inner3@x']).orderBy('email').pluck('email'), ['inner2@x', 'outer@x'])
    // explicit trx object, rollback; isolation level and read only
    const trx = await k.transaction()
    await trx(K.users).insert({ email: 'explicit@x' })
    await trx.rollback()
    assert.equal(trx.isCompleted(), true)
    assert.equal((await k(K.users).where('email', 'explicit@x').count('* as c'))[0].c, '0')
    const iso = await k.transaction(async (t) => (await t.raw('SHOW transaction_isolation')).rows[0].transaction_isolation, { isolationLevel: 'serializable' })
    assert.equal(iso, 'serializable')
    const iso2 = await k.transaction(async (t) => (await t.raw('SHOW transaction_isolation')).rows[0].transaction_isolation, { isolationLevel: 'repeatable read' })
    assert.equal(iso2, 'repeatable read')
    assert.equal((await k.raw('SHOW transaction_isolation')).rows[0].transaction_isolation, 'read committed', 'after the transaction')
    // an error inside a transaction: the transaction is rolled back, the pool's connection usable
    await expectError(k.transaction(async (t) => {
      await t(K.users).insert({ email: 'err@x' })
      await t.raw('SELECT 1/0')
    }), '22012', 'division by zero')
    assert.equal((await k(K.users).where('email', 'err@x').count('* as c'))[0].c, '0')
  })
}

async function kReadOnly() {
  await withKnex(async (k) => {
    // a table with a serial id: PostgreSQL refuses the INSERT itself with 25006
    const e = await expectError(k.transaction(async (t) => t(K.users).insert({ email: 'ro@x' }), { readOnly: true }), '25006', 'INSERT in a read-only transaction')
    // PostgreSQL names the INSERT; on a replicated shard pgproxy first evaluates the serial
    // default on the main, which fails the same way naming nextval()
    assert.match(e.message, /cannot execute (INSERT|nextval\(\)) in a read-only transaction/)
    await expectError(k.transaction(async (t) => t(K.users).where('id', 1).update({ email: 'ro@x' }), { readOnly: true }), '25006', 'UPDATE in a read-only transaction')
    assert.equal((await k(K.users).where('email', 'ro@x').count('* as c'))[0].c, '0')
  })
}

async function kStream() {
  await withKnex(async (k) => {
    await k.schema.dropTableIfExists(K.big)
    await k.schema.createTable(K.big, (t) => { t.increments('id'); t.integer('v').notNullable(); t.text('pad') })
    const rows = Array.from({ length: 3000 }, (_, i) => ({ v: i, pad: 'p'.repeat(i % 50) }))
    const ins = await k.batchInsert(K.big, rows, 500).returning('id')
    assert.equal(ins.length, 3000)
    let n = 0
    let sum = 0
    let last = -1
    for await (const row of k(K.big).select('id', 'v', 'pad').orderBy('v').stream({ highWaterMark: 100 })) {
      assert.ok(row.v > last, 'ordered')
      assert.equal(row.pad, 'p'.repeat(row.v % 50))
      last = row.v
      n++
      sum += row.v
    }
    assert.equal(n, 3000)
    assert.equal(sum, (2999 * 3000) / 2)
    // a stream stopped early, then the pool's connection is usable again
    let m = 0
    const s = k(K.big).select('v').orderBy('v').stream()
    for await (const row of s) { assert.equal(row.v, m); if (++m === 10) break }
    for (let i = 0; i < 4; i++) assert.equal((await k(K.big).count('* as c'))[0].c, '3000')
    // a stream inside a transaction
    await k.transaction(async (trx) => {
      await trx(K.big).where('v', '<', 1000).del()
      let c = 0
      for await (const row of trx(K.big).select('v').orderBy('v').stream()) { assert.ok(row.v >= 1000); c++ }
      assert.equal(c, 2000)
      throw new Error('undo')
    }).catch((e) => { if (e.message !== 'undo') throw e })
    assert.equal((await k(K.big).count('* as c'))[0].c, '3000')
  })
}

async function kPool() {
  // a pool that sets session state on every new connection (afterCreate): every query must see it
  let created = 0
  await withKnex(async (k) => {
    const rounds = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      if (i % 3 === 0) {
        return k.transaction(async (t) => {
          const r = await t.raw("SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, current_setting('search_path') AS sp, ?::int AS i", [i])
          await t(K.users).where('id', 1).update({ updated_at: k.fn.now() })
          return r.rows[0]
        })
      }
      const r = await k.raw("SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz, current_setting('search_path') AS sp, ?::int AS i, to_char('2024-01-01 00:00:00+00'::timestamptz, 'HH24:MI') AS local", [i])
      assert.equal(r.rows[0].local, '09:00', `query ${i}: timestamptz shown in the session's time zone`)
      return r.rows[0]
    }))
    for (const [i, r] of rounds.entries()) {
      assert.deepEqual([r.app, r.tz, r.sp, r.i], ['knex-orm-test', 'Asia/Tokyo', 'public, "$user"', i], `query ${i}`)
    }
    assert.ok(created >= 1 && created <= 2, `connections created: ${created}`)
    const pool = k.client.pool
    assert.ok(pool.numUsed() + pool.numFree() <= 2)
  }, {
    min: 1,
    max: 2,
    afterCreate: (conn, done) => {
      created++
      conn.query("SET application_name = 'knex-orm-test'; SET TIME ZONE 'Asia/Tokyo'; SET search_path = public, \"$user\"", (err) => done(err, conn))
    },
  })
}

async function kMigrations() {
  const log = []
  const migrations = {
    '20240101_create': {
      async up(k) {
        log.push('up1')
        await k.schema.createTable(K.migT, (t) => { t.increments('id'); t.string('name').notNullable() })
        await k(K.migT).insert([{ name: 'seed1' }, { name: 'seed2' }])
      },
      async down(k) { log.push('down1'); await k.schema.dropTable(K.migT) },
    },
    '20240102_alter': {
      async up(k) {
        log.push('up2')
        await k.schema.alterTable(K.migT, (t) => { t.integer('rank').notNullable().defaultTo(5); t.unique(['name']) })
        await k(K.migT).where('name', 'seed2').update({ rank: 9 })
      },
      async down(k) { log.push('down2'); await k.schema.alterTable(K.migT, (t) => { t.dropUnique(['name']); t.dropColumn('rank') }) },
    },
  }
  const migrationSource = {
    getMigrations: async () => Object.keys(migrations),
    getMigrationName: (m) => m,
    getMigration: async (m) => migrations[m],
  }
  const cfg = { migrationSource, tableName: K.mig }
  const quiet = () => {}
  await withKnex(async (k) => {
    let [done, pending] = await k.migrate.list(cfg)
    assert.equal(done.length, 0)
    assert.equal(pending.length, 2)
    const [batch, ran] = await k.migrate.latest(cfg)
    assert.equal(batch, 1)
    assert.deepEqual(ran, ['20240101_create', '20240102_alter'])
    assert.deepEqual(await k(K.migT).orderBy('id').select('name', 'rank'), [{ name: 'seed1', rank: 5 }, { name: 'seed2', rank: 9 }])
    assert.deepEqual(await k(K.mig).orderBy('id').pluck('name'), ['20240101_create', '20240102_alter'])
    assert.deepEqual(await k(`${K.mig}_lock`).pluck('is_locked'), [0], 'lock released')
    assert.equal(await k.migrate.currentVersion(cfg), '20240102')
    assert.deepEqual((await k.migrate.latest(cfg))[1], [], 'nothing to do the second time')
    const [, undone] = await k.migrate.down(cfg)
    assert.deepEqual(undone, ['20240102_alter'])
    assert.equal(await k.schema.hasColumn(K.migT, 'rank'), false)
    const [, rolled] = await k.migrate.rollback(cfg, true)
    assert.deepEqual(rolled, ['20240101_create'])
    assert.equal(await k.schema.hasTable(K.migT), false)
    ;[done, pending] = await k.migrate.list(cfg)
    assert.equal(done.length, 0)
    // a failing migration: rolled back as a whole (transactional DDL), the lock released
    migrations['20240103_broken'] = {
      async up(k2) { await k2.schema.createTable(`${K.migT}_x`, (t) => t.increments('id')); await k2.raw('SELECT * FROM no_such_table_orm') },
      async down() {},
    }
    await expectError(k.migrate.latest(cfg), '42P01', 'broken migration')
    assert.equal(await k.schema.hasTable(`${K.migT}_x`), false, 'DDL of the failed migration rolled back')
    assert.equal(await k.schema.hasTable(K.migT), false, 'the whole batch (one transaction) rolled back')
    assert.equal((await k.migrate.list(cfg))[0].length, 0, 'no migration recorded')
    assert.deepEqual(await k(`${K.mig}_lock`).pluck('is_locked'), [0], 'lock released after the failure')
    delete migrations['20240103_broken']
    assert.deepEqual((await k.migrate.latest(cfg))[1], ['20240101_create', '20240102_alter'])
    assert.deepEqual(log, ['up1', 'up2', 'down2', 'down1', 'up1', 'up2', 'up1', 'up2'])
    await k.migrate.rollback(cfg, true)
    await k.schema.dropTableIfExists(K.mig)
    await k.schema.dropTableIfExists(`${K.mig}_lock`)
  }, undefined, { log: { warn: quiet, error: quiet, debug: quiet, deprecate: quiet } })
}

async function kErrors() {
  await withKnex(async (k) => {
    let e = await expectError(k(K.users).insert({ email: 'a@x' }), '23505', 'duplicate email')
    assert.equal(e.constraint, `${K.users}_email_unique`)
    assert.match(e.detail, /Key \(email\)=\(a@x\) already exists/)
    assert.equal(e.table, K.users)
    e = await expectError(k(K.posts).insert({ user_id: 424242, title: 'orphan' }), '23503', 'foreign key')
    assert.equal(e.constraint, `${K.posts}_user_id_foreign`)
    e = await expectError(k(K.posts).insert({ user_id: 1 }), '23502', 'not null')
    assert.equal(e.column, 'title')
    await expectError(k('drv_orm_no_such_table').select('*'), '42P01', 'undefined table')
    await expectError(k.raw('SELEC 1'), '42601', 'syntax error')
    await expectError(k(K.users).where('id', 'not-a-number').first(), '22P02', 'invalid input syntax')
    // still usable, in the same pool
    assert.equal((await k(K.users).where('email', 'a@x').first('id')).id, 1)
  })
}

// ------------------------------------------------------------------ Sequelize

const S = { authors: `${P}_sauthors`, books: `${P}_sbooks`, settings: `${P}_ssettings` }

function sqNew(extra = {}) {
  return new Sequelize(CFG.database, CFG.user, CFG.password, {
    host: CFG.host, port: CFG.port, dialect: 'postgres', logging: false,
    pool: { max: 2, min: 0, acquire: 30000 }, timezone: '+05:30', ...extra,
  })
}
function sqModels(sq) {
  const Author = sq.define('Author', {
    id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
    uid: { type: DataTypes.UUID, defaultValue: DataTypes.UUIDV4, allowNull: false, unique: true },
    dbUid: { type: DataTypes.UUID, defaultValue: sq.fn('gen_random_uuid'), allowNull: false },
    name: { type: DataTypes.STRING(80), allowNull: false, unique: true },
    joined: { type: DataTypes.DATE, defaultValue: DataTypes.NOW, allowNull: false },
    meta: { type: DataTypes.JSONB },
  }, { tableName: S.authors })
  const Book = sq.define('Book', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    title: { type: DataTypes.STRING, allowNull: false },
    pages: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
    price: { type: DataTypes.DECIMAL(10, 2) },
  }, { tableName: S.books, paranoid: true, indexes: [{ fields: ['title'] }] })
  const Setting = sq.define('Setting', {
    key: { type: DataTypes.STRING(40), primaryKey: true },
    value: { type: DataTypes.INTEGER, allowNull: false },
  }, { tableName: S.settings, timestamps: false })
  Author.hasMany(Book, { foreignKey: { name: 'authorId', allowNull: false }, as: 'books', onDelete: 'CASCADE' })
  Book.belongsTo(Author, { foreignKey: { name: 'authorId', allowNull: false }, as: 'author' })
  return { Author, Book, Setting }
}
async function withSq(fn, extra) {
  const sq = sqNew(extra)
  try {
    return await fn(sq, sqModels(sq))
  } finally {
    await sq.close()
  }
}

async function sSync() {
  await withSq(async (sq, { Author, Book }) => {
    await sq.authenticate()
    await sq.sync({ force: true })
    await sq.sync() // again: nothing to do, no error
    await sq.sync({ alter: true }) // introspects and alters to the same definition
    const qi = sq.getQueryInterface()
    const tables = (await qi.showAllTables()).map((t) => (typeof t === 'string' ? t : t.tableName))
    assert.ok(tables.includes(S.authors) && tables.includes(S.books) && tables.includes(S.settings), `showAllTables: ${tables}`)
    const d = await qi.describeTable(S.authors)
    assert.equal(d.id.type, 'INTEGER')
    assert.equal(d.id.primaryKey, true)
    assert.match(d.id.defaultValue, /^nextval\(/)
    assert.equal(d.uid.type, 'UUID')
    assert.equal(d.dbUid.defaultValue, 'gen_random_uuid()')
    assert.equal(d.name.type, 'CHARACTER VARYING(80)')
    assert.equal(d.name.allowNull, false)
    assert.equal(d.joined.type, 'TIMESTAMP WITH TIME ZONE')
    assert.equal(d.meta.type, 'JSONB')
    const db = await qi.describeTable(S.books)
    assert.equal(db.id.type, 'BIGINT')
    assert.equal(db.price.type, 'NUMERIC')
    assert.equal(db.deletedAt.allowNull, true)
    const fks = await qi.getForeignKeyReferencesForTable(S.books)
    assert.equal(fks.length, 1, JSON.stringify(fks))
    assert.equal(fks[0].columnName, 'authorId')
    assert.equal(fks[0].referencedTableName, S.authors)
    assert.equal(fks[0].referencedColumnName, 'id')
    const idx = await qi.showIndex(S.authors)
    const uniq = idx.filter((i) => i.unique && !i.primary).map((i) => i.fields.map((f) => f.attribute).join(','))
    assert.deepEqual([...new Set(uniq)].sort(), ['name', 'uid'])
    assert.ok((await qi.showIndex(S.books)).some((i) => !i.unique && i.fields[0].attribute === 'title'), 'title index')
    assert.equal(await Author.count(), 0)
    assert.equal(await Book.count({ paranoid: false }), 0)
  })
}

async function sCreate() {
  await withSq(async (sq, { Author, Book }) => {
    const a = await Author.create({ name: 'Ann', meta: { tier: 'gold', tags: ['x', 'y'], address: { city: 'Oslo' } } })
    assert.equal(a.id, 1)
    assert.match(a.uid, UUID_RE)
    near(a.joined, 'joined')
    near(a.createdAt, 'createdAt')
    const reread = await Author.findByPk(1)
    assert.equal(reread.uid, a.uid)
    assert.match(reread.dbUid, UUID_RE)
    assert.equal(reread.joined.getTime(), a.joined.getTime(), 'DataTypes.NOW stored exactly')
    assert.deepEqual(reread.meta, a.meta)
    const more = await Author.bulkCreate([
      { name: 'Bob', meta: { tier: 'silver', tags: ['y'], address: { city: 'Rome' } } },
      { name: 'Cid', meta: { tier: 'gold', tags: ['z'], address: { city: 'Rome' } } },
      { name: 'Dan', meta: { tier: 'bronze', tags: [] } },
    ], { returning: true })
    assert.deepEqual(more.map((x) => x.id), [2, 3, 4])
    assert.equal(new Set(more.map((x) => x.dbUid).concat(reread.dbUid)).size, 4, 'db-generated uuids distinct')
    const books = await Book.bulkCreate([
      { title: 'A1', pages: 100, price: '10.50', authorId: 1 }, { title: 'A2', pages: 250, price: '20.00', authorId: 1 },
      { title: 'B1', pages: 50, price: '5.25', authorId: 2 }, { title: 'C1', pages: 400, price: '40.00', authorId: 3 },
      { title: 'C2', pages: 300, authorId: 3 }, { title: 'C3', pages: 120, price: '12.00', authorId: 3 },
    ], { returning: true })
    assert.deepEqual(books.map((b) => b.id), ['1', '2', '3', '4', '5', '6'])
    near(books[0].createdAt, 'book createdAt')
    assert.equal(books[4].price, null)
    const b = await Book.create({ title: 'D1', pages: 10, authorId: 4 })
    assert.equal(b.id, '7')
    assert.equal((await Book.findByPk('7')).title, 'D1')
  })
}

async function sFind() {
  await withSq(async (sq, { Author, Book }) => {
    let r = await Book.findAll({ where: { pages: { [Op.gt]: 60 } }, order: [['pages', 'DESC']], limit: 2, offset: 1 })
    assert.deepEqual(r.map((x) => x.title), ['C2', 'A2'])
    r = await Book.findAll({ where: { [Op.or]: [{ title: { [Op.like]: 'A%' } }, { price: null }] }, order: [['id', 'ASC']], attributes: ['title'] })
    assert.deepEqual(r.map((x) => x.title), ['A1', 'A2', 'C2', 'D1'])
    const authors = await Author.findAll({
      include: [{ model: Book, as: 'books' }],
      order: [['id', 'ASC'], [{ model: Book, as: 'books' }, 'id', 'ASC']],
    })
    assert.deepEqual(authors.map((x) => [x.name, x.books.map((y) => y.title)]),
      [['Ann', ['A1', 'A2']], ['Bob', ['B1']], ['Cid', ['C1', 'C2', 'C3']], ['Dan', ['D1']]])
    // include with limit: Sequelize puts the limit in a subquery
    const top2 = await Author.findAll({ include: [{ model: Book, as: 'books', required: false }], order: [['name', 'DESC']], limit: 2 })
    assert.deepEqual(top2.map((x) => [x.name, x.books.length]), [['Dan', 1], ['Cid', 3]])
    const book = await Book.findOne({ where: { title: 'C3' }, include: [{ model: Author, as: 'author', attributes: ['name'] }] })
    assert.equal(book.author.name, 'Cid')
    const withBooks = await Author.findAll({ include: [{ model: Book, as: 'books', where: { pages: { [Op.gte]: 300 } } }], order: [['id', 'ASC']] })
    assert.deepEqual(withBooks.map((x) => x.name), ['Cid'])
    const ann = await Author.findOne({ where: { name: 'Ann' } })
    assert.deepEqual((await ann.getBooks({ order: [['title', 'DESC']] })).map((x) => x.title), ['A2', 'A1'])
  })
}

async function sAggregates() {
  await withSq(async (sq, { Book }) => {
    assert.equal(await Book.count(), 7)
    assert.equal(await Book.count({ where: { authorId: 3 } }), 3)
    assert.equal(await Book.sum('pages'), 1230)
    assert.equal(await Book.max('pages'), 400)
    assert.equal(await Book.min('pages', { where: { authorId: 1 } }), 100)
    assert.equal(Number(await Book.sum('price')), 87.75)
    const g = await Book.count({ group: ['authorId'], order: [['authorId', 'ASC']] })
    assert.deepEqual(g.map((x) => [x.authorId, Number(x.count)]).sort((x, y) => x[0] - y[0]), [[1, 2], [2, 1], [3, 3], [4, 1]])
    const rows = await Book.findAll({
      attributes: ['authorId', [sq.fn('sum', sq.col('pages')), 'total'], [sq.fn('avg', sq.col('pages')), 'avg']],
      group: ['authorId'], order: [[sq.literal('total'), 'DESC']], raw: true,
    })
    assert.deepEqual(rows.map((x) => [x.authorId, Number(x.total)]), [[3, 820], [1, 350], [2, 50], [4, 10]])
    assert.equal(Number(rows[0].avg).toFixed(4), (820 / 3).toFixed(4))
    const { count, rows: page } = await Book.findAndCountAll({ where: { pages: { [Op.gte]: 100 } }, order: [['pages', 'ASC']], limit: 2, offset: 1 })
    assert.equal(count, 5)
    assert.deepEqual(page.map((x) => x.pages), [120, 250])
  })
}

async function sUpdateDestroy() {
  await withSq(async (sq, { Author, Book }) => {
    let [n] = await Book.update({ price: '1.00' }, { where: { authorId: 3 } })
    assert.equal(n, 3)
    const [n2, rows] = await Book.update({ pages: sq.literal('pages + 1') }, { where: { authorId: 1 }, returning: true })
    assert.equal(n2, 2)
    assert.deepEqual(rows.map((x) => x.pages).sort((x, y) => x - y), [101, 251])
    ;[n] = await Book.update({ price: '2.00' }, { where: { authorId: 999 } })
    assert.equal(n, 0)
    const b = await Book.findOne({ where: { title: 'B1' } })
    b.pages = 55
    await b.save()
    await b.increment('pages', { by: 5 })
    assert.equal((await Book.findByPk(b.id)).pages, 60)
    // paranoid: destroy sets deletedAt, the row is hidden, restore brings it back
    assert.equal(await Book.destroy({ where: { title: 'C2' } }), 1)
    assert.equal(await Book.findOne({ where: { title: 'C2' } }), null)
    const hidden = await Book.findOne({ where: { title: 'C2' }, paranoid: false })
    near(hidden.deletedAt, 'deletedAt')
    assert.equal(await Book.count(), 6)
    assert.equal(await Book.count({ paranoid: false }), 7)
    await Book.restore({ where: { title: 'C2' } })
    assert.equal((await Book.findOne({ where: { title: 'C2' } })).deletedAt, null)
    assert.equal(await Book.destroy({ where: { title: 'C2' }, force: true }), 1)
    assert.equal(await Book.count({ paranoid: false }), 6)
    // a plain model: destroy count, cascade
    const x = await Author.create({ name: 'Tmp' })
    await Book.bulkCreate([{ title: 'T1', authorId: x.id }, { title: 'T2', authorId: x.id }])
    assert.equal(await Author.destroy({ where: { name: 'Tmp' } }), 1)
    assert.equal(await Book.count({ where: { authorId: x.id }, paranoid: false }), 0, 'ON DELETE CASCADE')
    assert.equal(await Author.destroy({ where: { name: 'Nobody' } }), 0)
  })
}

async function sTransactions() {
  await withSq(async (sq, { Author, Book }) => {
    // managed: commit
    await sq.transaction(async (t) => {
      const a = await Author.create({ name: 'Tx1' }, { transaction: t })
      await Book.create({ title: 'Tx1B', authorId: a.id }, { transaction: t })
    })
    assert.equal((await Author.findOne({ where: { name: 'Tx1' }, include: [{ model: Book, as: 'books' }] })).books.length, 1)
    // managed: rollback on throw
    await assert.rejects(sq.transaction(async (t) => {
      await Author.create({ name: 'Tx2' }, { transaction: t })
      throw new Error('nope')
    }), /nope/)
    assert.equal(await Author.count({ where: { name: 'Tx2' } }), 0)
    // unmanaged: commit and rollback
    let t = await sq.transaction()
    await Author.create({ name: 'Tx3' }, { transaction: t })
    assert.equal(await Author.count({ where: { name: 'Tx3' }, transaction: t }), 1)
    await t.rollback()
    assert.equal(await Author.count({ where: { name: 'Tx3' } }), 0)
    t = await sq.transaction()
    await Author.create({ name: 'Tx4' }, { transaction: t })
    await t.commit()
    assert.equal(await Author.count({ where: { name: 'Tx4' } }), 1)
    // isolation levels, read-only
    for (const [lvl, want] of [[Transaction.ISOLATION_LEVELS.SERIALIZABLE, 'serializable'],
      [Transaction.ISOLATION_LEVELS.REPEATABLE_READ, 'repeatable read'], [Transaction.ISOLATION_LEVELS.READ_COMMITTED, 'read committed']]) {
      const got = await sq.transaction({ isolationLevel: lvl }, async (tx) => {
        await Author.count({ transaction: tx })
        return (await sq.query('SHOW transaction_isolation', { transaction: tx, type: QueryTypes.SELECT }))[0].transaction_isolation
      })
      assert.equal(got, want)
    }
    // repeatable read: a snapshot, another session's commit not seen until the end
    await sq.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ }, async (tx) => {
      const before = await Author.count({ transaction: tx })
      await Author.create({ name: 'Concurrent' }) // another connection of the pool, committed
      assert.equal(await Author.count({ transaction: tx }), before, 'snapshot')
    })
    assert.equal(await Author.count({ where: { name: 'Concurrent' } }), 1)
    // savepoints: a nested transaction rolled back, the outer committed
    await sq.transaction(async (outer) => {
      await Author.create({ name: 'Outer' }, { transaction: outer })
      await assert.rejects(sq.transaction({ transaction: outer }, async (inner) => {
        await Author.create({ name: 'Inner' }, { transaction: inner })
        await Author.create({ name: 'Outer' }, { transaction: inner }) // unique violation
      }), (e) => e.name === 'SequelizeUniqueConstraintError' && sqlstate(e) === '23505')
      await sq.transaction({ transaction: outer }, async (inner) => { await Author.create({ name: 'Inner2' }, { transaction: inner }) })
    })
    assert.deepEqual((await Author.findAll({ where: { name: ['Outer', 'Inner', 'Inner2'] }, order: [['name', 'ASC']] })).map((x) => x.name), ['Inner2', 'Outer'])
    // afterCommit hook
    let hooked = false
    await sq.transaction(async (tx) => { tx.afterCommit(() => { hooked = true }); await Author.count({ transaction: tx }) })
    assert.equal(hooked, true)
  })
}

async function sFindOrCreateUpsert() {
  await sequelizeFunctionCall(() => sFindOrCreateUpsertRun())
}

async function sFindOrCreateUpsertRun() {
  await withSq(async (sq, { Author }) => {
    // findOrCreate without a transaction: Sequelize opens one and inserts through a plpgsql
    // function in pg_temp with an exception block (CREATE FUNCTION; SELECT; DROP FUNCTION)
    const [a1, c1] = await Author.findOrCreate({ where: { name: 'Foc' }, defaults: { meta: { v: 1 } } })
    assert.equal(c1, true)
    assert.equal(a1.name, 'Foc')
    assert.ok(Number.isInteger(a1.id) && a1.id > 0)
    assert.deepEqual(a1.meta, { v: 1 })
    const [a2, c2] = await Author.findOrCreate({ where: { name: 'Foc' }, defaults: { meta: { v: 2 } } })
    assert.equal(c2, false)
    assert.equal(a2.id, a1.id)
    assert.deepEqual(a2.meta, { v: 1 })
  })
}

async function sFindOrCreateTx() {
  await sequelizeFunctionCall(() => sFindOrCreateTxRun())
}

async function sFindOrCreateTxRun() {
  await withSq(async (sq, { Author }) => {
    // inside the application's transaction: savepoints, and the same pg_temp function
    await sq.transaction(async (t) => {
      const [x, cx] = await Author.findOrCreate({ where: { name: 'FocTx' }, transaction: t })
      assert.equal(cx, true)
      const [y, cy] = await Author.findOrCreate({ where: { name: 'FocTx' }, transaction: t })
      assert.equal(cy, false)
      assert.equal(y.id, x.id)
    })
    assert.equal(await Author.count({ where: { name: 'FocTx' } }), 1)
  })
}

async function sFindOrCreateRace() {
  await sequelizeFunctionCall(() => sFindOrCreateRaceRun())
}

async function sFindOrCreateRaceRun() {
  await withSq(async (sq, { Author }) => {
    // concurrent findOrCreate of the same row: one creates, the other finds it
    const both = await Promise.all([0, 1].map(() => Author.findOrCreate({ where: { name: 'Race' } })))
    assert.equal(both.filter(([, c]) => c).length, 1, 'exactly one created')
    assert.equal(both[0][0].id, both[1][0].id)
    // findCreateFind, create with ignoreDuplicates (ON CONFLICT DO NOTHING)
    const [f, cf] = await Author.findCreateFind({ where: { name: 'Fcf' } })
    assert.equal(cf, true)
    assert.equal((await Author.findByPk(f.id)).name, 'Fcf')
    await Author.bulkCreate([{ name: 'Fcf' }, { name: 'Fcf2' }], { ignoreDuplicates: true })
    assert.equal(await Author.count({ where: { name: ['Fcf', 'Fcf2'] } }), 2)
  })
}

async function sUpsert() {
  await withSq(async (sq, { Author, Setting }) => {
    // upsert: INSERT ... ON CONFLICT DO UPDATE ... RETURNING
    const [s1] = await Setting.upsert({ key: 'k1', value: 1 })
    assert.equal(s1.value, 1)
    const [s2] = await Setting.upsert({ key: 'k1', value: 2 })
    assert.equal(s2.value, 2)
    await Setting.upsert({ key: 'k2', value: 3 })
    assert.deepEqual((await Setting.findAll({ order: [['key', 'ASC']], raw: true })), [{ key: 'k1', value: 2 }, { key: 'k2', value: 3 }])
    const a1 = await Author.create({ name: 'ToUpsert', meta: { v: 0 } })
    const [au] = await Author.upsert({ id: a1.id, name: 'ToUpsert', meta: { v: 3 } })
    assert.deepEqual(au.meta, { v: 3 })
    assert.deepEqual((await Author.findByPk(a1.id)).meta, { v: 3 })
    const [an] = await Author.upsert({ name: 'Upserted', meta: { v: 4 } })
    assert.ok(an.id > a1.id)
    assert.equal((await Author.findOne({ where: { name: 'Upserted' } })).id, an.id)
  })
}

async function sJsonb() {
  await withSq(async (sq, { Author }) => {
    const names = async (where, order = [['id', 'ASC']]) => (await Author.findAll({ where, order })).map((x) => x.name)
    assert.deepEqual(await names({ meta: { tier: 'gold' } }), ['Ann', 'Cid'])
    assert.deepEqual(await names({ meta: { address: { city: 'Rome' } } }), ['Bob', 'Cid'])
    assert.deepEqual(await names({ meta: { [Op.contains]: { tags: ['y'] } } }), ['Ann', 'Bob'])
    assert.deepEqual(await names({ 'meta.tier': { [Op.in]: ['silver', 'bronze'] } }), ['Bob', 'Dan'])
    assert.deepEqual(await names(sq.where(sq.literal(`jsonb_array_length("meta"->'tags')`), Op.gte, 2)), ['Ann'])
    assert.deepEqual(await names({ meta: { tier: { [Op.ne]: null } } }, [[sq.literal(`"meta"->>'tier'`), 'DESC'], ['name', 'ASC']]), ['Bob', 'Ann', 'Cid', 'Dan'])
    const a = await Author.findOne({ where: { name: 'Dan' } })
    a.meta = { ...a.meta, tier: 'gold', extra: { n: 1.5, s: 'é"\\' } }
    a.changed('meta', true)
    await a.save()
    assert.deepEqual((await Author.findByPk(a.id)).meta, { tier: 'gold', tags: [], extra: { n: 1.5, s: 'é"\\' } })
    assert.deepEqual(await names({ meta: { tier: 'gold' } }), ['Ann', 'Cid', 'Dan'])
  })
}

async function sSession() {
  // Sequelize sets client_min_messages and the time zone on every new connection ('+05:30' here)
  await withSq(async (sq) => {
    const res = await Promise.all(Array.from({ length: 12 }, (_, i) => sq.query(
      "SELECT current_setting('TimeZone') AS tz, current_setting('client_min_messages') AS cmm, to_char('2024-01-01 00:00:00+00'::timestamptz, 'HH24:MI') AS local, :i::int AS i",
      { type: QueryTypes.SELECT, replacements: { i } })))
    for (const [i, [r]] of res.entries()) {
      assert.deepEqual([r.cmm, r.local, r.i], ['warning', '05:30', i], `query ${i} (TimeZone ${r.tz})`)
    }
    // raw queries with bind parameters ($1) and replacements
    const [row] = await sq.query('SELECT $1::int + $2::int AS s, $3::text AS t', { bind: [40, 2, "it's"], type: QueryTypes.SELECT })
    assert.deepEqual(row, { s: 42, t: "it's" })
  })
}

// ------------------------------------------------------------------ TypeORM

const TT = { users: `${P}_tusers`, posts: `${P}_tposts`, tags: `${P}_ttags`, mig: `${P}_tmig`, migT: `${P}_tmigt` }

const TUser = new typeorm.EntitySchema({
  name: 'TUser',
  tableName: TT.users,
  columns: {
    id: { type: 'uuid', primary: true, generated: 'uuid' },
    name: { type: 'varchar', length: 100, unique: true },
    age: { type: 'int', nullable: true },
    meta: { type: 'jsonb', nullable: true },
    created: { type: 'timestamptz', createDate: true },
    updated: { type: 'timestamptz', updateDate: true },
    version: { type: 'int', version: true },
  },
  relations: {
    posts: { type: 'one-to-many', target: 'TPost', inverseSide: 'author', cascade: true },
  },
})
const TPost = new typeorm.EntitySchema({
  name: 'TPost',
  tableName: TT.posts,
  columns: {
    id: { type: 'int', primary: true, generated: 'increment' },
    title: { type: 'varchar' },
    views: { type: 'int', default: 0 },
  },
  indices: [{ name: `${P}_tposts_title`, columns: ['title'] }],
  relations: {
    author: { type: 'many-to-one', target: 'TUser', inverseSide: 'posts', joinColumn: { name: 'author_id' }, onDelete: 'CASCADE', nullable: false },
    tags: { type: 'many-to-many', target: 'TTag', joinTable: { name: `${P}_tpost_tags` }, cascade: true },
  },
})
const TTag = new typeorm.EntitySchema({
  name: 'TTag',
  tableName: TT.tags,
  columns: { id: { type: 'int', primary: true, generated: 'increment' }, label: { type: 'varchar', unique: true } },
})

class CreateTMig1700000000001 {
  async up(qr) {
    await qr.createTable(new typeorm.Table({
      name: TT.migT,
      columns: [
        { name: 'id', type: 'int', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
        { name: 'label', type: 'varchar', isUnique: true },
        { name: 'at', type: 'timestamptz', default: 'now()' },
      ],
    }), true)
    await qr.query(`INSERT INTO "${TT.migT}" (label) VALUES ($1), ($2)`, ['m1', 'm2'])
  }
  async down(qr) { await qr.dropTable(TT.migT) }
}
class AlterTMig1700000000002 {
  async up(qr) {
    await qr.addColumn(TT.migT, new typeorm.TableColumn({ name: 'score', type: 'int', default: 3 }))
    await qr.query(`UPDATE "${TT.migT}" SET score = 7 WHERE label = 'm2'`)
  }
  async down(qr) { await qr.dropColumn(TT.migT, 'score') }
}

function tDataSource(extra = {}) {
  return new typeorm.DataSource({
    type: 'postgres', host: CFG.host, port: CFG.port, username: CFG.user, password: CFG.password, database: CFG.database,
    entities: [TUser, TPost, TTag], synchronize: true, logging: false, poolSize: 2,
    migrations: [CreateTMig1700000000001, AlterTMig1700000000002], migrationsTableName: TT.mig,
    extra: { connectionTimeoutMillis: 30000 }, ...extra,
  })
}
let tds = null // the TypeORM checks share one DataSource (closed by tClose)

async function tSync() {
  tds = tDataSource()
  await tds.initialize()
  // synchronize again: introspection must find the schema identical to the entities
  const log = await tds.driver.createSchemaBuilder().log()
  assert.deepEqual(log.upQueries.map((q) => q.query), [], 'no schema change after synchronize')
  await tds.synchronize()
  const qr = tds.createQueryRunner()
  try {
    const t = await qr.getTable(TT.posts)
    assert.deepEqual(t.columns.map((c) => c.name).sort(), ['author_id', 'id', 'title', 'views'])
    assert.match(String(t.findColumnByName('views').default), /^'?0'?$/)
    assert.equal(t.findColumnByName('id').isGenerated, true)
    assert.equal(t.foreignKeys.length, 1)
    assert.equal(t.foreignKeys[0].referencedTableName, TT.users)
    assert.equal(t.foreignKeys[0].onDelete, 'CASCADE')
    assert.ok(t.indices.some((i) => i.name === `${P}_tposts_title`), 'index')
    const u = await qr.getTable(TT.users)
    assert.equal(u.findColumnByName('id').type, 'uuid')
    assert.equal(u.findColumnByName('meta').type, 'jsonb')
    assert.ok(u.uniques.length === 1 || u.indices.some((i) => i.isUnique), 'unique name')
    assert.ok(await qr.hasTable(`${P}_tpost_tags`), 'join table')
  } finally {
    await qr.release()
  }
}

async function tCrud() {
  const users = tds.getRepository('TUser')
  const posts = tds.getRepository('TPost')
  const saved = await users.save({ name: 'Ann', age: 30, meta: { k: [1, 2] }, posts: [{ title: 'p1', tags: [{ label: 'red' }, { label: 'blue' }] }, { title: 'p2', views: 5 }] })
  assert.match(saved.id, UUID_RE)
  near(saved.created, 'created')
  assert.equal(saved.version, 1)
  assert.ok(saved.posts.every((p) => Number.isInteger(p.id)), 'cascaded posts have ids')
  const more = await users.save([{ name: 'Bob', age: 20 }, { name: 'Cid', age: 40, posts: [{ title: 'c1', views: 9 }] }, { name: 'Dee' }])
  assert.equal(new Set(more.map((x) => x.id).concat(saved.id)).size, 4)
  const ann = await users.findOne({ where: { id: saved.id }, relations: { posts: { tags: true } }, order: { posts: { id: 'ASC' } } })
  assert.equal(ann.name, 'Ann')
  assert.deepEqual(ann.meta, { k: [1, 2] })
  assert.deepEqual(ann.posts.map((p) => [p.title, p.views, p.tags.map((t) => t.label).sort()]), [['p1', 0, ['blue', 'red']], ['p2', 5, []]])
  ann.age = 31
  const again = await users.save(ann)
  assert.equal(again.version, 2)
  assert.equal((await users.findOneBy({ id: saved.id })).age, 31)
  const ur = await users.update({ name: 'Bob' }, { age: 21 })
  assert.equal(ur.affected, 1)
  assert.equal(await users.count(), 4)
  assert.equal(await users.countBy({ age: typeorm.MoreThan(25) }), 2)
  assert.deepEqual((await users.find({ where: { age: typeorm.IsNull() } })).map((x) => x.name), ['Dee'])
  const dr = await users.delete({ name: 'Dee' })
  assert.equal(dr.affected, 1)
  assert.equal(await users.count(), 3)
  assert.equal(await posts.count(), 3)
  // sum/max
  assert.equal(await posts.sum('views'), 14)
  assert.equal(await posts.maximum('views'), 9)
  // remove with cascade of the FK in the database
  const cid = await users.findOneByOrFail({ name: 'Cid' })
  await users.remove(cid)
  assert.equal(await posts.countBy({ title: 'c1' }), 0)
  await users.save({ name: 'Cid', age: 40, posts: [{ title: 'c1', views: 9 }] })
  // optimistic lock version checked in a find
  await assert.rejects(users.findOne({ where: { name: 'Ann' }, lock: { mode: 'optimistic', version: 1 } }), /OptimisticLockVersionMismatch|version/i)
}

async function tQueryBuilder() {
  const users = tds.getRepository('TUser')
  const list = await users.createQueryBuilder('u').leftJoinAndSelect('u.posts', 'p')
    .where('u.age > :a', { a: 20 }).orderBy('u.name', 'ASC').addOrderBy('p.id', 'ASC').getMany()
  assert.deepEqual(list.map((u) => [u.name, u.posts.map((p) => p.title)]), [['Ann', ['p1', 'p2']], ['Bob', []], ['Cid', ['c1']]])
  const raw = await tds.createQueryBuilder().select('u.name', 'name').addSelect('COUNT(p.id)', 'n').addSelect('COALESCE(SUM(p.views), 0)', 'v')
    .from(TT.users, 'u').leftJoin(TT.posts, 'p', 'p.author_id = u.id').groupBy('u.name').orderBy('u.name').getRawMany()
  assert.deepEqual(raw, [{ name: 'Ann', n: '2', v: '5' }, { name: 'Bob', n: '0', v: '0' }, { name: 'Cid', n: '1', v: '9' }])
  const tagged = await tds.getRepository('TPost').createQueryBuilder('p').innerJoin('p.tags', 't', 't.label = :l', { l: 'red' })
    .innerJoinAndSelect('p.author', 'a').getOneOrFail()
  assert.deepEqual([tagged.title, tagged.author.name], ['p1', 'Ann'])
  const sub = await users.createQueryBuilder('u').where((qb) => `u.id IN ${qb.subQuery().select('p.author_id').from(TT.posts, 'p').where('p.views >= :v').getQuery()}`)
    .setParameter('v', 5).orderBy('u.name').getMany()
  assert.deepEqual(sub.map((u) => u.name), ['Ann', 'Cid'])
  const upd = await users.createQueryBuilder().update().set({ age: () => 'age + 1' }).where('name IN (:...ns)', { ns: ['Ann', 'Bob'] }).returning(['name', 'age']).execute()
  assert.equal(upd.affected, 2)
  assert.deepEqual(upd.raw.map((r) => [r.name, r.age]).sort(), [['Ann', 32], ['Bob', 22]])
  const ins = await tds.createQueryBuilder().insert().into('TTag').values([{ label: 'green' }, { label: 'pink' }]).returning(['id', 'label']).execute()
  assert.deepEqual(ins.raw.map((r) => r.label), ['green', 'pink'])
  assert.equal(ins.identifiers.length, 2)
  const stream = await users.createQueryBuilder('u').select('u.name', 'name').orderBy('u.name').stream()
  const names = []
  for await (const row of stream) names.push(row.name)
  assert.deepEqual(names, ['Ann', 'Bob', 'Cid'])
}

async function tTransactions() {
  const users = tds.getRepository('TUser')
  await tds.transaction(async (m) => {
    await m.save('TUser', { name: 'Tx1', age: 1 })
    assert.equal(await m.countBy('TUser', { name: 'Tx1' }), 1)
  })
  assert.equal(await users.countBy({ name: 'Tx1' }), 1)
  await assert.rejects(tds.transaction(async (m) => {
    await m.save('TUser', { name: 'Tx2' })
    throw new Error('abort')
  }), /abort/)
  assert.equal(await users.countBy({ name: 'Tx2' }), 0)
  const iso = await tds.transaction('SERIALIZABLE', async (m) => (await m.query('SHOW transaction_isolation'))[0].transaction_isolation)
  assert.equal(iso, 'serializable')
  // a QueryRunner: start, nested start (savepoint), rollback of the nested one, commit
  const qr = tds.createQueryRunner()
  await qr.connect()
  try {
    await qr.startTransaction('REPEATABLE READ')
    assert.equal((await qr.query('SHOW transaction_isolation'))[0].transaction_isolation, 'repeatable read')
    await qr.manager.save('TUser', { name: 'Qr1' })
    await qr.startTransaction()
    await qr.manager.save('TUser', { name: 'Qr2' })
    await expectError(qr.manager.save('TUser', { name: 'Qr1' }), '23505', 'duplicate in the savepoint')
    await qr.rollbackTransaction()
    assert.equal(await qr.manager.countBy('TUser', { name: typeorm.In(['Qr1', 'Qr2']) }), 1, 'after ROLLBACK TO SAVEPOINT')
    await qr.commitTransaction()
    assert.equal(qr.isTransactionActive, false)
    await qr.startTransaction()
    await qr.manager.save('TUser', { name: 'Qr3' })
    await qr.rollbackTransaction()
  } finally {
    await qr.release()
  }
  assert.deepEqual((await users.find({ where: { name: typeorm.Like('Qr%') }, order: { name: 'ASC' } })).map((u) => u.name), ['Qr1'])
  // pessimistic lock inside a transaction
  await tds.transaction(async (m) => {
    const u = await m.getRepository('TUser').findOne({ where: { name: 'Qr1' }, lock: { mode: 'pessimistic_write' } })
    u.age = 77
    await m.save('TUser', u)
  })
  assert.equal((await users.findOneBy({ name: 'Qr1' })).age, 77)
  await users.delete({ name: typeorm.In(['Tx1', 'Qr1']) })
}

async function tPagination() {
  const users = tds.getRepository('TUser')
  await users.save(Array.from({ length: 12 }, (_, i) => ({ name: `pg${String(i).padStart(2, '0')}`, age: 100 + i, posts: i % 3 === 0 ? [{ title: `pp${i}a` }, { title: `pp${i}b` }] : [] })))
  const [page, total] = await users.findAndCount({ where: { name: typeorm.Like('pg%') }, order: { name: 'DESC' }, skip: 3, take: 4 })
  assert.equal(total, 12)
  assert.deepEqual(page.map((u) => u.name), ['pg08', 'pg07', 'pg06', 'pg05'])
  // skip/take with a join: TypeORM selects the distinct ids of the page first
  const withPosts = await users.find({ where: { name: typeorm.Like('pg%') }, relations: { posts: true }, order: { name: 'ASC' }, skip: 2, take: 3 })
  assert.deepEqual(withPosts.map((u) => [u.name, u.posts.map((p) => p.title).sort()]), [['pg02', []], ['pg03', ['pp3a', 'pp3b']], ['pg04', []]].map(([n, t]) => [n, t]))
  const [qbPage, qbTotal] = await users.createQueryBuilder('u').leftJoinAndSelect('u.posts', 'p').where('u.name LIKE :p', { p: 'pg%' })
    .orderBy('u.age', 'DESC').skip(1).take(2).getManyAndCount()
  assert.equal(qbTotal, 12)
  assert.deepEqual(qbPage.map((u) => [u.name, u.posts.length]), [['pg10', 0], ['pg09', 2]])
}

async function tMigrations() {
  const pending = await tds.showMigrations()
  assert.equal(pending, true, 'pending migrations')
  const ran = await tds.runMigrations({ transaction: 'all' })
  assert.deepEqual(ran.map((m) => m.name), ['CreateTMig1700000000001', 'AlterTMig1700000000002'])
  assert.deepEqual(await tds.query(`SELECT label, score FROM "${TT.migT}" ORDER BY id`), [{ label: 'm1', score: 3 }, { label: 'm2', score: 7 }])
  assert.deepEqual((await tds.query(`SELECT name FROM "${TT.mig}" ORDER BY id`)).map((r) => r.name), ['CreateTMig1700000000001', 'AlterTMig1700000000002'])
  assert.equal(await tds.showMigrations(), false)
  await tds.undoLastMigration()
  const cols = (await tds.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position', [TT.migT])).map((r) => r.column_name)
  assert.deepEqual(cols, ['id', 'label', 'at'])
  await tds.undoLastMigration()
  assert.equal((await tds.query('SELECT to_regclass($1) AS r', [TT.migT]))[0].r, null)
  const ran2 = await tds.runMigrations({ transaction: 'each' })
  assert.equal(ran2.length, 2)
  await tds.undoLastMigration()
  await tds.undoLastMigration()
  await tds.query(`DROP TABLE IF EXISTS "${TT.mig}"`)
}

async function tErrors() {
  const users = tds.getRepository('TUser')
  const e = await expectError(users.insert({ name: 'Ann' }), '23505', 'duplicate name')
  assert.ok(e instanceof typeorm.QueryFailedError)
  assert.match(e.driverError.detail, /Key \(name\)=\(Ann\) already exists/)
  await expectError(tds.getRepository('TPost').insert({ title: 'x', author: { id: '00000000-0000-0000-0000-000000000000' } }), '23503', 'foreign key')
  await expectError(users.findOneBy({ id: 'not-a-uuid' }), '22P02', 'bad uuid')
  assert.equal((await users.findOneBy({ name: 'Ann' })).name, 'Ann')
}

async function tClose() {
  if (tds && tds.isInitialized) await tds.destroy()
  tds = null
}

// ------------------------------------------------------------------ drv_contacts (sharded by user_id on the sharded target)
// Shared by every driver run: this program uses its own key band (7e10..) and deletes its rows at
// the start and the end. Runs on every target (the baseline); the refusals only on sharded.
const SH = 'drv_contacts'
const SH_USERS = 12
const SH_LO = 70000000000 + (process.pid % 4000000) * 100
const SH_BAND = 40 // keys probed for their shard; the users are picked from them
const SH_HI = SH_LO + SH_BAND - 1
// on the sharded target, shSetup reorders them to alternate shards (s0, s1, s0, ...), so that
// any two neighbours (the multi-user batches below) span both shards
const users = Array.from({ length: SH_USERS }, (_, i) => SH_LO + i)
const shRows = new Map() // `${u}/${id}` -> {user_id, id, name, n}
const shShard = new Map() // u -> 's0' | 's1' (sharded target: where PostgreSQL's hash partitioning puts u)
const key = (u, id) => `${u}/${id}`
const put = (u, id, name, n) => shRows.set(key(u, id), { user_id: u, id, name, n })
const expectedRows = () => [...shRows.values()].sort((a, b) => a.user_id - b.user_id || a.id - b.id)
const norm = (rows) => rows.map((r) => ({ user_id: Number(r.user_id), id: Number(r.id), name: r.name, n: r.n === null ? null : Number(r.n) }))
  .sort((a, b) => a.user_id - b.user_id || a.id - b.id)
function twoUsers() {
  const a = users[0]
  const b = users.find((u) => shShard.get(u) !== shShard.get(a))
  return [a, b || users[1]]
}

async function shAll(k) {
  return norm(await k(SH).whereBetween('user_id', [SH_LO, SH_HI]).select('user_id', 'id', 'name', 'n'))
}
// every row of the band on the shard PostgreSQL's hash partitioning gives its user_id, once
async function shPlacement(k) {
  if (!SHARDED) return
  const seen = []
  for (const shard of ['s0', 's1']) {
    const r = await k.raw(`/* pgproxy: shard=${shard} */ SELECT user_id, id FROM ${SH} WHERE user_id BETWEEN ? AND ?`, [SH_LO, SH_HI])
    for (const row of r.rows) {
      const u = Number(row.user_id)
      assert.equal(shard, shShard.get(u), `row ${u}/${row.id} on ${shard}, its key belongs on ${shShard.get(u)}`)
      seen.push(key(u, Number(row.id)))
    }
  }
  assert.deepEqual(seen.sort(), [...shRows.keys()].sort(), 'every row on exactly one shard')
}

async function shSetup() {
  await withKnex(async (k) => {
    await k.raw(`CREATE TABLE IF NOT EXISTS ${SH} (id bigint, user_id bigint NOT NULL, name text, n int, PRIMARY KEY (user_id, id))`)
    await k(SH).whereBetween('user_id', [SH_LO, SH_HI]).del()
    if (SHARDED) {
      // where each key belongs: a hash-partitioned probe table (DDL goes to every shard)
      const probe = `${P}_probe`
      await k.raw(`CREATE TABLE ${probe} (k bigint) PARTITION BY HASH (k)`)
      try {
        for (let u = SH_LO; u <= SH_HI; u++) {
          const r = await k.raw(`SELECT satisfies_hash_partition('${probe}'::regclass, 2, 1, ?::bigint) AS s1`, [u])
          shShard.set(u, r.rows[0].s1 ? 's1' : 's0')
        }
      } finally {
        await k.raw(`DROP TABLE ${probe}`)
      }
      const of = (s) => [...shShard.keys()].filter((u) => shShard.get(u) === s)
      const [s0, s1] = [of('s0'), of('s1')]
      assert.ok(s0.length >= SH_USERS / 2 && s1.length >= SH_USERS / 2, 'the band covers both shards')
      users.splice(0, SH_USERS, ...users.map((_, i) => (i % 2 ? s1 : s0)[i >> 1]))
    }
    // knex: one INSERT ... RETURNING per row (each to its key's shard)
    for (const u of users.slice(0, 6)) {
      for (const id of [1, 2]) {
        const [r] = await k(SH).insert({ id, user_id: u, name: `k${u}_${id}`, n: (u - SH_LO) * 10 + id }).returning('*')
        assert.deepEqual(norm([r]), [{ user_id: u, id, name: `k${u}_${id}`, n: (u - SH_LO) * 10 + id }])
        put(u, id, `k${u}_${id}`, (u - SH_LO) * 10 + id)
      }
    }
    // a batch for one user, with RETURNING: one shard
    const u6 = users[6]
    const b = await k(SH).insert([1, 2, 3].map((id) => ({ id, user_id: u6, name: `b${id}`, n: 60 + id }))).returning(['id', 'n'])
    assert.deepEqual(b.map((r) => [Number(r.id), r.n]), [[1, 61], [2, 62], [3, 63]])
    for (const id of [1, 2, 3]) put(u6, id, `b${id}`, 60 + id)
    // a batch over several users: knex binds the values ($1, ...); pgproxy splits it per shard
    // (each part its rows and parameters)
    const rows = users.slice(7, 10).map((u, i) => ({ id: 1, user_id: u, name: `m${i}`, n: 70 + i }))
    if (SHARDED) assert.ok(new Set(rows.map((r) => shShard.get(r.user_id))).size > 1, 'the batch spans shards')
    const bound = await k(SH).insert(rows)
    assert.equal(bound.rowCount, 3)
    rows.forEach((r) => put(r.user_id, 1, r.name, r.n))
    assert.deepEqual(await shAll(k), expectedRows())
    await shPlacement(k)
  })
}

async function shKnex() {
  await withKnex(async (k) => {
    const [a, b] = twoUsers()
    // by key: select, update, delete
    assert.deepEqual(norm(await k(SH).where({ user_id: a }).orderBy('id').select('*')), expectedRows().filter((r) => r.user_id === a))
    assert.equal(await k(SH).where({ user_id: a, id: 1 }).update({ name: 'upd' }), 1)
    shRows.get(key(a, 1)).name = 'upd'
    const upd = await k(SH).where({ user_id: b }).update({ n: k.raw('n + 1000') }).returning(['id', 'n'])
    assert.equal(upd.length, expectedRows().filter((r) => r.user_id === b).length)
    for (const r of upd) shRows.get(key(b, Number(r.id))).n = r.n
    assert.equal(await k(SH).where({ user_id: a, id: 2 }).del(), 1)
    shRows.delete(key(a, 2))
    // a transaction over two users on two shards (2PC), and one rolled back
    await k.transaction(async (t) => {
      await t(SH).where({ user_id: a, id: 1 }).update({ n: 1 })
      await t(SH).where({ user_id: b, id: 1 }).update({ n: 2 })
      assert.equal((await t(SH).where({ user_id: a, id: 1 }).first('n')).n, 1)
    })
    shRows.get(key(a, 1)).n = 1
    shRows.get(key(b, 1)).n = 2
    await k.transaction(async (t) => {
      await t(SH).where({ user_id: a, id: 1 }).update({ n: -1 })
      await t(SH).where({ user_id: b, id: 1 }).update({ n: -2 })
      throw new Error('rb')
    }).catch((e) => { if (e.message !== 'rb') throw e })
    assert.deepEqual(await shAll(k), expectedRows())
    // UPDATE / DELETE without the key (by name only): every shard, summed counts
    const targets = expectedRows().filter((r) => r.name.startsWith('m'))
    assert.equal(await k(SH).whereBetween('user_id', [SH_LO, SH_HI]).where('name', 'like', 'm%').update({ n: 500 }), targets.length)
    for (const r of targets) shRows.get(key(r.user_id, r.id)).n = 500
    assert.equal(await k(SH).whereIn('user_id', [users[9], users[8]]).where('name', 'like', 'm%').del(), 2)
    shRows.delete(key(users[9], 1)); shRows.delete(key(users[8], 1))
    assert.deepEqual(await shAll(k), expectedRows())
    await shPlacement(k)
  })
}

async function shMergedReads() {
  await withKnex(async (k) => {
    const rows = expectedRows()
    const band = () => k(SH).whereBetween('user_id', [SH_LO, SH_HI])
    const [agg] = await band().count('* as c').sum('n as s').max('n as mx').min('n as mn')
    assert.deepEqual([Number(agg.c), Number(agg.s), agg.mx, agg.mn],
      [rows.length, rows.reduce((x, r) => x + r.n, 0), Math.max(...rows.map((r) => r.n)), Math.min(...rows.map((r) => r.n))])
    const [avg] = await band().avg('n as a')
    assert.equal(Number(avg.a).toFixed(6), (rows.reduce((x, r) => x + r.n, 0) / rows.length).toFixed(6))
    const top = await band().select('user_id', 'id', 'n').orderBy([{ column: 'n', order: 'desc' }, 'user_id', 'id']).limit(4).offset(1)
    const want = [...rows].sort((x, y) => y.n - x.n || x.user_id - y.user_id || x.id - y.id).slice(1, 5)
    assert.deepEqual(top.map((r) => [Number(r.user_id), Number(r.id), r.n]), want.map((r) => [r.user_id, r.id, r.n]))
    const g = await band().select('user_id').count('* as c').sum('n as s').groupBy('user_id').orderBy('user_id')
    const gm = new Map()
    for (const r of rows) { const v = gm.get(r.user_id) || [0, 0]; v[0]++; v[1] += r.n; gm.set(r.user_id, v) }
    assert.deepEqual(g.map((r) => [Number(r.user_id), Number(r.c), Number(r.s)]), [...gm.entries()].sort((x, y) => x[0] - y[0]).map(([u, v]) => [u, ...v]))
    const d = await band().distinct('id').orderBy('id')
    assert.deepEqual(d.map((r) => Number(r.id)), [...new Set(rows.map((r) => r.id))].sort())
    // a page with a parameterised limit/offset (knex binds them)
    const page = await band().select('user_id', 'id').orderBy(['user_id', 'id']).limit(3).offset(2)
    assert.deepEqual(page.map((r) => [Number(r.user_id), Number(r.id)]), rows.slice(2, 5).map((r) => [r.user_id, r.id]))
  })
}

async function shRefusals() {
  await withKnex(async (k) => {
    // INSERT without the key: refused (sharded) / NOT NULL violation (one PostgreSQL)
    await expectError(k(SH).insert({ id: 99, name: 'nokey', n: 1 }), SHARDED ? '0A000' : '23502', 'INSERT without the key')
    await expectError(k.raw(`INSERT INTO ${SH} (id, name, n) VALUES (?, ?, ?)`, [98, 'nokey', 1]), SHARDED ? '0A000' : '23502', 'raw INSERT without the key')
    // a batch INSERT over several shards with RETURNING (knex's default for .returning())
    const rows = users.slice(10, 12).map((u) => ({ id: 5, user_id: u, name: 'ret', n: 5 }))
    // split per shard; the RETURNING rows come back in VALUES order
    {
      const desc = [...rows].reverse()
      const r = await k(SH).insert(desc).returning('*')
      assert.deepEqual(r.map((x) => [Number(x.user_id), Number(x.id)]), desc.map((x) => [x.user_id, x.id]))
      for (const x of rows) put(x.user_id, x.id, x.name, x.n)
    }
    if (SHARDED) {
      // refused with an explanation: window functions, string_agg, HAVING across shards
      let e = await expectError(k(SH).whereBetween('user_id', [SH_LO, SH_HI]).select('user_id', k.raw('row_number() over (order by n) as rn')), '0A000', 'window function')
      assert.ok(e.message.length > 20, e.message)
      e = await expectError(k(SH).whereBetween('user_id', [SH_LO, SH_HI]).select(k.raw('string_agg(name, \',\') as s')), '0A000', 'string_agg')
      e = await expectError(k(SH).whereBetween('user_id', [SH_LO, SH_HI]).select('user_id').count('* as c').groupBy('user_id').havingRaw('count(*) > ?', [1]), '0A000', 'HAVING')
      // a fan-out read inside a transaction: merged, and after a write it sees the write, as
      // on one PostgreSQL (the transaction is then rolled back)
      const rolledBack = new Error('roll back')
      const txErr = await k.transaction(async (t) => {
        await t(SH).where({ user_id: users[0] }).select('id')
        const [{ c }] = await t(SH).whereBetween('user_id', [SH_LO, SH_HI]).count('* as c')
        assert.equal(Number(c), expectedRows().length, 'fan-out read in a transaction')
        await t(SH).where({ user_id: users[0] }).del()
        const [{ c: after }] = await t(SH).whereBetween('user_id', [SH_LO, SH_HI]).count('* as c')
        const mine = expectedRows().filter((r) => Number(r.user_id) === Number(users[0])).length
        assert.ok(mine > 0, 'rows of the key')
        assert.equal(Number(after), expectedRows().length - mine, 'fan-out read after a write in a transaction sees it')
        throw rolledBack
      }).catch((err) => err)
      assert.equal(txErr, rolledBack, `the transaction ran to its end: ${txErr && txErr.message}`)
    }
    assert.deepEqual(await shAll(k), expectedRows(), 'nothing written by the refused statements')
    await shPlacement(k)
  })
}

const shContactAttrs = {
  id: { type: DataTypes.BIGINT, primaryKey: true },
  user_id: { type: DataTypes.BIGINT, primaryKey: true, allowNull: false },
  name: { type: DataTypes.TEXT },
  n: { type: DataTypes.INTEGER },
}

async function withContact(fn) {
  await withSq(async (sq) => fn(sq, sq.define('Contact', shContactAttrs, { tableName: SH, timestamps: false })))
  await withKnex(shPlacement)
}

async function shSequelize() {
  await withContact(async (sq, Contact) => {
    const u = users[10]
    const c = await Contact.create({ id: 11, user_id: u, name: 'sq', n: 111 })
    assert.equal(c.name, 'sq')
    put(u, 11, 'sq', 111)
    const got = await Contact.findOne({ where: { user_id: u, id: 11 } })
    assert.deepEqual([Number(got.user_id), got.name, got.n], [u, 'sq', 111])
    got.n = 112
    await got.save()
    shRows.get(key(u, 11)).n = 112
    await got.increment('n', { by: 3 })
    shRows.get(key(u, 11)).n = 115
    // bulkCreate for one user (RETURNING, one shard)
    const bc = await Contact.bulkCreate([12, 13].map((id) => ({ id, user_id: u, name: `sq${id}`, n: id })))
    assert.deepEqual(bc.map((x) => Number(x.id)), [12, 13])
    for (const id of [12, 13]) put(u, id, `sq${id}`, id)
    // bulkCreate over several users: Sequelize adds RETURNING by default; split per shard,
    // the returned rows in the order given; returning: false is split too
    const multi = users.slice(0, 4).reverse().map((x, i) => ({ id: 20, user_id: x, name: `bulk${i}`, n: 20 + i }))
    if (SHARDED) assert.ok(new Set(multi.map((r) => shShard.get(r.user_id))).size > 1, 'bulkCreate spans shards')
    const made = await Contact.bulkCreate(multi)
    assert.deepEqual(made.map((x) => [Number(x.user_id), x.name, x.n]), multi.map((x) => [x.user_id, x.name, x.n]))
    for (const x of multi) put(x.user_id, 20, x.name, x.n)
    const quiet = multi.map((x) => ({ ...x, id: 21 }))
    await Contact.bulkCreate(quiet, { returning: false })
    for (const x of quiet) put(x.user_id, 21, x.name, x.n)
    assert.deepEqual(await shAllSq(Contact), expectedRows())
    // update / destroy by key, counts
    let [n] = await Contact.update({ name: 'sq-upd' }, { where: { user_id: u, id: [12, 13] } })
    assert.equal(n, 2)
    shRows.get(key(u, 12)).name = 'sq-upd'; shRows.get(key(u, 13)).name = 'sq-upd'
    assert.equal(await Contact.destroy({ where: { user_id: u, id: 13 } }), 1)
    shRows.delete(key(u, 13))
    assert.deepEqual(await shAllSq(Contact), expectedRows())
  })
}

async function shSequelizeFoc() {
  await sequelizeFunctionCall(() => shSequelizeFocRun())
}

async function shSequelizeFocRun() {
  await withContact(async (sq, Contact) => {
    // findOrCreate on a sharded model: a plpgsql function in pg_temp does the INSERT, which
    // pgproxy cannot see: the row must still end up on its key's shard (or be refused)
    const [f1, created] = await Contact.findOrCreate({ where: { user_id: users[11], id: 30 }, defaults: { name: 'foc', n: 30 } })
    assert.equal(created, true)
    assert.equal(f1.name, 'foc')
    put(users[11], 30, 'foc', 30)
    const [f2, created2] = await Contact.findOrCreate({ where: { user_id: users[11], id: 30 }, defaults: { name: 'foc2', n: 31 } })
    assert.equal(created2, false)
    assert.equal(f2.name, 'foc')
    assert.deepEqual(await shAllSq(Contact), expectedRows())
  })
}

async function shSequelizeUpsert() {
  await withContact(async (sq, Contact) => {
    // Model.upsert: INSERT ... ON CONFLICT (id, user_id) DO UPDATE SET "id"=EXCLUDED."id",
    // "user_id"=EXCLUDED."user_id", ... (Sequelize sets every column, the key too)
    const u = users[11]
    const [up] = await Contact.upsert({ id: 33, user_id: u, name: 'ins', n: 33 })
    assert.equal(up.name, 'ins')
    put(u, 33, 'ins', 33)
    const [up2] = await Contact.upsert({ id: 33, user_id: u, name: 'upsert', n: 34 })
    assert.deepEqual([up2.name, up2.n], ['upsert', 34])
    shRows.get(key(u, 33)).name = 'upsert'; shRows.get(key(u, 33)).n = 34
    assert.deepEqual(await shAllSq(Contact), expectedRows())
  })
}

async function shSequelizeReads() {
  await withContact(async (sq, Contact) => {
    const u = users[10]
    // merged reads: count, sum, max, order + limit, group by
    const rows = expectedRows()
    const band = { user_id: { [Op.between]: [SH_LO, SH_HI] } }
    assert.equal(await Contact.count({ where: band }), rows.length)
    assert.equal(Number(await Contact.sum('n', { where: band })), rows.reduce((x, r) => x + r.n, 0))
    assert.equal(await Contact.max('n', { where: band }), Math.max(...rows.map((r) => r.n)))
    const top = await Contact.findAll({ where: band, order: [['n', 'DESC'], ['user_id', 'ASC'], ['id', 'ASC']], limit: 3 })
    assert.deepEqual(norm(top.map((x) => x.get())).map((r) => r.n).sort((x, y) => y - x),
      [...rows].sort((x, y) => y.n - x.n).slice(0, 3).map((r) => r.n))
    const g = await Contact.count({ where: band, group: ['user_id'], order: [['user_id', 'ASC']] })
    const gm = new Map()
    for (const r of rows) gm.set(r.user_id, (gm.get(r.user_id) || 0) + 1)
    assert.deepEqual(g.map((x) => [Number(x.user_id), Number(x.count)]).sort((x, y) => x[0] - y[0]), [...gm.entries()].sort((x, y) => x[0] - y[0]))
    const { count, rows: page } = await Contact.findAndCountAll({ where: band, order: [['user_id', 'ASC'], ['id', 'ASC']], limit: 4, offset: 2 })
    assert.equal(count, rows.length)
    assert.deepEqual(norm(page.map((x) => x.get())), rows.slice(2, 6))
    // a transaction on one user
    await sq.transaction(async (t) => {
      await Contact.update({ n: 7 }, { where: { user_id: u, id: 11 }, transaction: t })
      assert.equal((await Contact.findOne({ where: { user_id: u, id: 11 }, transaction: t })).n, 7)
    })
    shRows.get(key(u, 11)).n = 7
    assert.deepEqual(await shAllSq(Contact), expectedRows())
  })
}
async function shAllSq(Contact) {
  return norm((await Contact.findAll({ where: { user_id: { [Op.between]: [SH_LO, SH_HI] } }, raw: true })))
}

const TContact = new typeorm.EntitySchema({
  name: 'TContact',
  tableName: SH,
  synchronize: false,
  columns: {
    id: { type: 'bigint', primary: true },
    user_id: { type: 'bigint', primary: true },
    name: { type: 'text', nullable: true },
    n: { type: 'int', nullable: true },
  },
})

async function shTypeorm() {
  const ds = new typeorm.DataSource({
    type: 'postgres', host: CFG.host, port: CFG.port, username: CFG.user, password: CFG.password, database: CFG.database,
    entities: [TContact], synchronize: false, logging: false, poolSize: 2,
  })
  await ds.initialize()
  try {
    const repo = ds.getRepository('TContact')
    const u = users[5]
    // save (SELECT by primary key, then INSERT in a transaction), by key
    await repo.save({ id: '40', user_id: String(u), name: 'to', n: 40 })
    put(u, 40, 'to', 40)
    const one = await repo.findOneBy({ user_id: String(u), id: '40' })
    assert.deepEqual([one.name, one.n], ['to', 40])
    one.n = 41
    await repo.save(one)
    shRows.get(key(u, 40)).n = 41
    // save of several rows of two shards: one transaction (2PC)
    const [a, b] = twoUsers()
    const two = [{ id: '41', user_id: String(a), name: 'two', n: 1 }, { id: '41', user_id: String(b), name: 'two', n: 2 }]
    // TypeORM saves both in one multi-row INSERT with bound values and RETURNING, in the
    // transaction it opens: split per shard, committed with two-phase commit
    await repo.save(two)
    put(a, 41, 'two', 1); put(b, 41, 'two', 2)
    assert.deepEqual(norm(await repo.findBy({ user_id: typeorm.Between(String(SH_LO), String(SH_HI)) })), expectedRows())
    assert.equal((await repo.update({ user_id: String(a), id: '41' }, { n: 3 })).affected, 1)
    shRows.get(key(a, 41)).n = 3
    assert.equal((await repo.delete({ user_id: String(b), id: '41' })).affected, 1)
    shRows.delete(key(b, 41))
    // merged reads through the repository and the QueryBuilder
    const rows = expectedRows()
    const band = { user_id: typeorm.Between(String(SH_LO), String(SH_HI)) }
    assert.equal(await repo.countBy(band), rows.length)
    const [page, total] = await repo.findAndCount({ where: band, order: { user_id: 'ASC', id: 'ASC' }, skip: 3, take: 4 })
    assert.equal(total, rows.length)
    assert.deepEqual(norm(page), rows.slice(3, 7))
    const g = await repo.createQueryBuilder('c').select('c.user_id', 'user_id').addSelect('COUNT(*)', 'c').addSelect('MAX(c.n)', 'mx')
      .where('c.user_id BETWEEN :lo AND :hi', { lo: SH_LO, hi: SH_HI }).groupBy('c.user_id').orderBy('c.user_id').getRawMany()
    const gm = new Map()
    for (const r of rows) { const v = gm.get(r.user_id) || [0, -Infinity]; v[0]++; v[1] = Math.max(v[1], r.n); gm.set(r.user_id, v) }
    assert.deepEqual(g.map((r) => [Number(r.user_id), Number(r.c), r.mx]), [...gm.entries()].sort((x, y) => x[0] - y[0]).map(([k2, v]) => [k2, ...v]))
    // an INSERT without the key through the QueryBuilder: refused on sharded
    await expectError(repo.createQueryBuilder().insert().values({ id: '50', name: 'nokey' }).execute(), SHARDED ? '0A000' : '23502', 'TypeORM insert without the key')
    assert.deepEqual(norm(await repo.findBy(band)), expectedRows())
  } finally {
    await ds.destroy()
  }
  await withKnex(shPlacement)
}

async function shCleanup() {
  await withKnex(async (k) => {
    const n = await k(SH).whereBetween('user_id', [SH_LO, SH_HI]).del()
    assert.equal(n, shRows.size)
    shRows.clear()
  })
}

// ------------------------------------------------------------------ shared tables on the sharded target

// the ORM tables are shared tables there: written on both shards, they must hold the same rows
async function sharedIdentical() {
  await withKnex(async (k) => {
    const tables = [K.users, K.posts, K.big, S.authors, S.books, S.settings, TT.users, TT.posts, TT.tags, `${P}_tpost_tags`]
    for (const t of tables) {
      const dump = async (shard) => (await k.raw(`/* pgproxy: shard=${shard} */ SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) AS h, count(*) AS c FROM ${t} x`)).rows[0]
      const [h0, h1] = [await dump('s0'), await dump('s1')]
      assert.deepEqual(h1, h0, `table ${t}: shards differ`)
    }
  })
}

async function cleanup() {
  if (process.env.ORM_KEEP === '1') return
  await withKnex(async (k) => {
    for (const t of [`${P}_tpost_tags`, TT.posts, TT.tags, TT.users, TT.migT, TT.mig, S.books, S.authors, S.settings,
      K.posts, K.users, K.big, K.migT, `${K.migT}_x`, K.mig, `${K.mig}_lock`]) {
      await k.schema.dropTableIfExists(t)
    }
  })
}

async function main() {
  const v = (m) => JSON.parse(require('node:fs').readFileSync(require('node:path').join(__dirname, 'node_modules', m, 'package.json'), 'utf8')).version
  console.log(`knex ${v('knex')}, sequelize ${v('sequelize')}, typeorm ${v('typeorm')}, pg ${v('pg')}, node ${process.version}, target ${TARGET} ${CFG.host}:${CFG.port}`)
  const t0 = Date.now()
  await check('knex: schema builder (increments, uuid/now() defaults, jsonb, FK, unique, columnInfo)', kSchema)
  await check('knex: insert returning (single, batch), defaults read back', kInsertReturning)
  await check('knex: select where/orderBy/limit/offset, joins, group by', kSelect)
  await check('knex: update/del counts, returning, cascade, onConflict merge/ignore', kUpdateDelete)
  await check('knex: raw with bindings (positional, named, identifiers), multi-statement', kRaw)
  await check('knex: transactions (commit, rollback, nested savepoints, isolation, read only)', kTransactions)
  await check('knex: write in a read-only transaction (25006)', kReadOnly)
  await check('knex: batchInsert, .stream() (full, stopped early, in a transaction)', kStream)
  await check('knex: pool min/max with afterCreate session settings, 30 concurrent queries', kPool)
  await check('knex: migrations (in-memory source: latest, down, rollback, failure, lock)', kMigrations)
  await check('knex: errors with SQLSTATE and fields (23505, 23503, 23502, 42P01, 42601, 22P02)', kErrors)
  await check('sequelize: sync force/alter, describeTable, FKs, indexes', sSync)
  await check('sequelize: create/bulkCreate returning, UUIDV4, NOW, gen_random_uuid defaults', sCreate)
  await check('sequelize: findAll where/order/limit, include (hasMany/belongsTo)', sFind)
  await check('sequelize: count/sum/max/min, group, findAndCountAll', sAggregates)
  await check('sequelize: update/destroy counts, paranoid destroy/restore, cascade', sUpdateDestroy)
  await check('sequelize: managed/unmanaged transactions, isolation levels, savepoints', sTransactions)
  await check('sequelize: findOrCreate without a transaction (pg_temp function with exception block)', sFindOrCreateUpsert)
  await check('sequelize: findOrCreate in a transaction (savepoint, pg_temp function)', sFindOrCreateTx)
  await check('sequelize: concurrent findOrCreate, findCreateFind, ignoreDuplicates', sFindOrCreateRace)
  await check('sequelize: upsert (ON CONFLICT DO UPDATE RETURNING)', sUpsert)
  await check('sequelize: JSONB queries', sJsonb)
  await check('sequelize: connection settings (timezone, client_min_messages) on pooled queries, bind', sSession)
  await check('typeorm: DataSource synchronize, schema introspection stable', tSync)
  if (tds && tds.isInitialized) {
    await check('typeorm: repository CRUD, cascades, uuid keys, version column', tCrud)
    await check('typeorm: QueryBuilder joins, group by, subquery, returning, stream', tQueryBuilder)
    await check('typeorm: transactions (dataSource.transaction, QueryRunner, savepoints, locks)', tTransactions)
    await check('typeorm: pagination (skip/take, with joins, getManyAndCount)', tPagination)
    await check('typeorm: migrations (run all/each, undo)', tMigrations)
    await check('typeorm: errors (QueryFailedError with SQLSTATE)', tErrors)
  }
  await check('typeorm: close', tClose)
  await check(`drv_contacts: setup, knex inserts by key${SHARDED ? ', placement by hash' : ''}`, shSetup)
  if (!SHARDED || shShard.size === SH_BAND) {
    await check('drv_contacts: knex by key, 2-user transactions, writes without the key', shKnex)
    await check('drv_contacts: knex merged reads (count/sum/avg, order+limit+offset, group by, distinct)', shMergedReads)
    await check(`drv_contacts: refusals ${SHARDED ? '(0A000)' : '(baseline)'}, nothing written`, shRefusals)
    await check('drv_contacts: sequelize model keyed by user_id (create, save, bulkCreate, update/destroy)', shSequelize)
    await check('drv_contacts: sequelize findOrCreate by key (pg_temp function)', shSequelizeFoc)
    await check('drv_contacts: sequelize upsert by key', shSequelizeUpsert)
    await check('drv_contacts: sequelize merged reads (count/sum/max, order+limit, group, findAndCountAll), transaction', shSequelizeReads)
    await check('drv_contacts: typeorm entity keyed by user_id (save, 2-shard save, pagination, group by)', shTypeorm)
  }
  await check('drv_contacts: cleanup', shCleanup)
  if (SHARDED) await check('shared tables identical on both shards', sharedIdentical)
  await check('cleanup', cleanup)
  console.log(`node-orm ${TARGET}: ${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)}s)`)
  process.exit(failed || !passed ? 1 : 0)
}

main().catch((e) => {
  console.log(`FAIL node-orm ${TARGET}: unexpected: ${e && e.stack}`)
  process.exit(1)
})
