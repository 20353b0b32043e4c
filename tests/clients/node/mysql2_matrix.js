// Node mysql2 client matrix for dbmesh, driven by tests/clients/test_node_mysql2.py.
//
// Input (JSON on stdin): {direct, proxy, sha2, caFile, table, ddl, largeDdl}; endpoints are
// {host, port, user, password, database}. Output (JSON on stdout): for each endpoint the trace of the
// same scenario — `query` (text protocol) and `execute` (COM_STMT_PREPARE/EXECUTE) steps with their rows,
// column metadata, affected rows, insert ids, warning counts and errors — plus connection checks
// that only make sense through dbmesh (TLS, caching_sha2, wrong password). Python compares and asserts.
'use strict';

const mysql = require('mysql2/promise');

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

// JSON-safe rendering: Buffers as {hex}, BigInts as strings, Dates should not occur (dateStrings).
function plain(value) {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') };
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Date) return { date: value.toISOString() };
  if (typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

function fieldInfo(f) {
  return {
    name: f.name, orgName: f.orgName, table: f.table, orgTable: f.orgTable, schema: f.schema,
    columnType: f.columnType, columnLength: f.columnLength, characterSet: f.characterSet,
    flags: f.flags, decimals: f.decimals,
  };
}

function errorInfo(e) {
  return { errno: e.errno ?? null, sqlState: e.sqlState ?? null, code: e.code ?? null, message: e.sqlMessage ?? e.message };
}

async function step(conn, kind, label, sql, params) {
  try {
    const [result, fields] = kind === 'execute' ? await conn.execute(sql, params) : await conn.query(sql, params);
    if (Array.isArray(result)) {
      return { label, kind, rows: plain(result), fields: (fields || []).map(fieldInfo) };
    }
    return {
      label, kind, affectedRows: result.affectedRows, insertId: result.insertId,
      warningStatus: result.warningStatus, changedRows: result.changedRows ?? null, info: result.info,
    };
  } catch (e) {
    return { label, kind, error: errorInfo(e) };
  }
}

function connOptions(ep, extra = {}) {
  return {
    host: ep.host, port: ep.port, user: ep.user, password: ep.password, database: ep.database,
    charset: 'utf8mb4_general_ci', supportBigNumbers: true, bigNumberStrings: true, dateStrings: true,
    connectTimeout: 10000, ...extra,
  };
}

const BINARY = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from([0, 255, 0])]);
const EMOJI = 'héllo wörld 😀 — ✓ 中文';

function crudSteps(kind, t) {
  const cols = '(i, bu, d, dbl, vc, txt, bl, dt, dtm, tm, ts, js, en, short)';
  const marks = '(' + Array(14).fill('?').join(', ') + ')';
  const row1 = [42, '18446744073709551615', '12345678.90', 3.141592653589793, EMOJI, 'long text ⚙ '.repeat(500),
    BINARY, '2024-02-29', '2024-01-02 03:04:05.123456', '25:03:04', '2024-05-06 07:08:09',
    '{"a": [1, 2, {"b": null}], "emoji": "😀"}', 'green', 'abc'];
  const nulls = Array(14).fill(null);
  return [
    [kind, 'insert 2', `INSERT INTO ${t} ${cols} VALUES ${marks}, ${marks}`, [...row1, ...nulls]],
    [kind, 'select all', `SELECT * FROM ${t} ORDER BY id`, []],
    [kind, 'select expressions', `SELECT id, bu - 1 AS b, d * 2 AS d2, HEX(bl) AS h, CHAR_LENGTH(vc) AS n, ` +
      `JSON_EXTRACT(js, '$.a[1]') AS j, NULL AS nothing, ? AS echo, ? AS bin FROM ${t} ORDER BY id`, [EMOJI, BINARY]],
    [kind, 'select by null param', `SELECT id FROM ${t} WHERE (vc <=> ?) ORDER BY id`, [null]],
    [kind, 'update', `UPDATE ${t} SET en = 'green' WHERE id IN (1, 2)`, []],
    [kind, 'insert ignore', `INSERT IGNORE INTO ${t} (short) VALUES (?)`, ['too long for five']],
    ['query', 'show warnings', 'SHOW WARNINGS', []],
    [kind, 'missing table', 'SELECT * FROM no_such_table_for_client_matrix', []],
    [kind, 'duplicate', `INSERT INTO ${t} (id) VALUES (?)`, [1]],
    [kind, 'syntax', 'SELEC 1', []],
    [kind, 'delete', `DELETE FROM ${t} WHERE id = ?`, [2]],
    [kind, 'count', `SELECT COUNT(*) AS n FROM ${t}`, []],
  ];
}

async function runSteps(conn, steps) {
  const out = [];
  for (const [kind, label, sql, params] of steps) out.push(await step(conn, kind, label, sql, params));
  return out;
}

async function withConn(opts, fn) {
  const conn = await mysql.createConnection(opts);
  try { return await fn(conn); } finally { await conn.end(); }
}

async function recreate(direct, ddl) {
  await withConn(connOptions(direct), async (c) => {
    await c.query(ddl.drop);
    await c.query(ddl.create);
  });
}

async function scenario(ep, direct, cfg) {
  const out = {};
  for (const kind of ['query', 'execute']) {
    for (const flags of ['+FOUND_ROWS', '-FOUND_ROWS']) {
      await recreate(direct, cfg.ddl);
      out[`crud ${kind} ${flags}`] = await withConn(connOptions(ep, { flags }), (c) => runSteps(c, crudSteps(kind, cfg.table)));
    }
  }
  // Large (>1 MiB) parameters, bound by execute and escaped by query.
  await recreate(direct, cfg.largeDdl);
  const big = Buffer.alloc(2 * 1024 * 1024 + 5);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  out.large = await withConn(connOptions(ep), (c) => runSteps(c, [
    ['execute', 'insert large execute', `INSERT INTO ${cfg.table} (bl, i) VALUES (?, ?)`, [big, null]],
    ['query', 'insert large query', `INSERT INTO ${cfg.table} (bl, i) VALUES (?, ?)`, [big, 1]],
    ['execute', 'read back', `SELECT id, LENGTH(bl) AS n, MD5(bl) AS m, i FROM ${cfg.table} WHERE bl = ? ORDER BY id`, [big]],
  ]));
  // Transactions, watched from a second connection.
  await recreate(direct, cfg.ddl);
  out.transactions = await withConn(connOptions(ep), (c1) => withConn(connOptions(ep), async (c2) => {
    const seen = async (c) => (await c.query(`SELECT vc FROM ${cfg.table} ORDER BY id`))[0].map((r) => r.vc);
    const log = [];
    await c1.beginTransaction();
    await c1.execute(`INSERT INTO ${cfg.table} (vc) VALUES (?)`, ['committed']);
    await c1.commit();
    log.push(['after commit, other', await seen(c2)]);
    await c1.beginTransaction();
    await c1.execute(`INSERT INTO ${cfg.table} (vc) VALUES (?)`, ['rolled back']);
    log.push(['inside', await seen(c1)]);
    log.push(['inside, other', await seen(c2)]);
    await c1.rollback();
    log.push(['after rollback', await seen(c1)]);
    log.push(['after rollback, other', await seen(c2)]);
    return log;
  }));
  return out;
}

async function connectChecks(cfg) {
  const fs = require('fs');
  const ca = fs.readFileSync(cfg.caFile);
  const out = {};
  const probe = async (name, opts) => {
    try {
      out[name] = await withConn(opts, async (c) => {
        const [rows] = await c.query('SELECT 1 AS one, DATABASE() AS db');
        return { rows: plain(rows), tls: !!(c.connection.stream && c.connection.stream.encrypted) };
      });
    } catch (e) {
      out[name] = { error: errorInfo(e) };
    }
  };
  await probe('plain root', connOptions(cfg.proxy));
  await probe('tls root', connOptions(cfg.proxy, { ssl: { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } }));
  await probe('tls sha2', connOptions(cfg.sha2, { ssl: { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } }));
  await probe('plain sha2', connOptions(cfg.sha2));
  await probe('wrong root', connOptions({ ...cfg.proxy, password: 'wrong' }));
  await probe('wrong sha2 tls', connOptions({ ...cfg.sha2, password: 'wrong' }, { ssl: { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } }));
  return out;
}

async function main() {
  const cfg = JSON.parse(await readStdin());
  const result = {
    versions: { node: process.version, mysql2: require('mysql2/package.json').version },
    direct: await scenario(cfg.direct, cfg.direct, cfg),
    dbmesh: await scenario(cfg.proxy, cfg.direct, cfg),
    connect: await connectChecks(cfg),
  };
  process.stdout.write(JSON.stringify(result));
}

main().catch((e) => {
  process.stderr.write(`mysql2_matrix failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
