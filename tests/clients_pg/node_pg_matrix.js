// node-postgres ("pg") matrix: reads a JSON config on stdin, runs the same steps against PostgreSQL
// directly and through dbmesh, prints one JSON document with both traces (run by test_node_pg.py).
// node_modules come from tests/clients/node (NODE_PATH), where package.json lists "pg".
'use strict';
const { Client } = require('pg');

function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v && typeof v === 'object' && '$bytes' in v) return Buffer.from(v.$bytes, 'hex');
  return v;
}

function plain(v) {
  if (Buffer.isBuffer(v)) return { hex: v.toString('hex') };
  if (v instanceof Date) return { date: v.toISOString() };
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && v.constructor === Object) {
    const o = {}; for (const k of Object.keys(v)) o[k] = plain(v[k]); return o;
  }
  return v;
}

function errorInfo(e) {
  return { code: e.code, message: e.message, detail: e.detail, position: e.position, constraint: e.constraint,
           table: e.table, severity: e.severity, hint: e.hint };
}

function observe(label, r) {
  return { label, command: r.command, rowCount: r.rowCount,
           fields: r.fields ? r.fields.map(f => [f.name, f.dataTypeID, f.format, f.tableID !== 0]) : null,
           rows: r.fields && r.fields.length ? r.rows.map(row => row.map(plain)) : null };
}

async function connect(ep, extra = {}) {
  const c = new Client({ host: ep.host, port: ep.port, user: ep.user, password: ep.password, database: ep.database,
                         ssl: false, connectionTimeoutMillis: 10000, ...extra });
  await c.connect();
  return c;
}

async function runSteps(c, steps, named) {
  const out = [];
  let i = 0;
  for (const s of steps) {
    const q = { text: s.sql, values: s.params ? revive(s.params) : undefined, rowMode: 'array' };
    if (named && s.params) q.name = `stmt_${i++}`;
    try { out.push(observe(s.label, await c.query(q))); }
    catch (e) { out.push({ label: s.label, error: errorInfo(e) }); }
  }
  return out;
}

async function scenario(ep, cfg) {
  const res = {};
  const admin = await connect(cfg.direct);  // tables are (re)made directly, like the Python fixtures
  try {
    for (const mode of ['query', 'named']) {
      await admin.query(cfg.ddl.drop); await admin.query(cfg.ddl.create);
      const c = await connect(ep);
      try {
        res[`crud ${mode}`] = await runSteps(c, cfg.steps, mode === 'named');
        if (mode === 'named') {  // the named statements again: prepared once per connection by node-pg
          await admin.query(cfg.ddl.drop); await admin.query(cfg.ddl.create);
          res['crud named again'] = await runSteps(c, cfg.steps, true);
        }
      } finally { await c.end(); }
    }
    // transactions, watched from a second connection
    await admin.query(cfg.ddl.drop); await admin.query(cfg.txDdl);
    const a = await connect(ep), b = await connect(ep);
    const seen = async (c) => (await c.query(`SELECT v FROM ${cfg.table} ORDER BY id`)).rows.map(r => r.v);
    const tx = [];
    try {
      await a.query('BEGIN'); await a.query(`INSERT INTO ${cfg.table} (v) VALUES ($1)`, ['committed']);
      await a.query('COMMIT');
      tx.push(['after commit, other', await seen(b)]);
      await a.query('BEGIN'); await a.query(`INSERT INTO ${cfg.table} (v) VALUES ($1)`, ['rolled back']);
      tx.push(['inside', await seen(a)]);
      tx.push(['inside, other', await seen(b)]);
      try { await a.query('SELECT 1/0'); } catch (e) { tx.push(['error in tx', e.code]); }
      try { await a.query('SELECT 1'); } catch (e) { tx.push(['after error in tx', e.code]); }
      await a.query('ROLLBACK');
      tx.push(['after rollback', await seen(a)]);
      tx.push(['after rollback, other', await seen(b)]);
      // notices
      const notices = [];
      a.on('notice', n => notices.push([n.severity, n.code, n.message]));
      await a.query("DO $$ BEGIN RAISE NOTICE 'hi'; END $$");
      await a.query('SELECT 1');
      tx.push(['notices', notices]);
    } finally { await a.end(); await b.end(); }
    res.transactions = tx;
    await admin.query(cfg.ddl.drop);
  } finally { await admin.end(); }
  return res;
}

async function logins(cfg) {
  const out = {};
  for (const [name, user, password, ssl] of [
    ['root', 'root', 'rootpw', false], ['root tls', 'root', 'rootpw', { rejectUnauthorized: false }],
    ['md5', 'md5client', 'md5pw', false], ['md5 tls', 'md5client', 'md5pw', { rejectUnauthorized: false }],
    ['password', 'plainclient', 'plainpw', false], ['wrong root', 'root', 'nope', false],
    ['wrong md5', 'md5client', 'nope', false], ['wrong password', 'plainclient', 'nope', { rejectUnauthorized: false }],
  ]) {
    try {
      const c = await connect({ ...cfg.proxy, user, password }, { ssl });
      const r = await c.query('SELECT 1 AS one');
      out[name] = { rows: r.rows, tls: !!(c.connection && c.connection.stream && c.connection.stream.encrypted) };
      await c.end();
    } catch (e) { out[name] = { error: errorInfo(e) }; }
  }
  return out;
}

(async () => {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const cfg = JSON.parse(input);
  const result = { direct: await scenario(cfg.direct, cfg), dbmesh: await scenario(cfg.proxy, cfg) };
  if (cfg.logins) result.logins = await logins(cfg);
  process.stdout.write(JSON.stringify(result));
})().catch(e => { console.error(e && e.stack || e); process.exit(1); });
