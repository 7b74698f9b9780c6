/**
 * `npm run bench:federation-parts`: where a large federation sync spends its time, part by
 * part, in one process and without a network (issue 14): one cluster's publisher signing
 * its VMs, the listener's query for a batch, the batch's JSON and schema check, and
 * another cluster's receiver applying it (ed25519 checks, the judge, one transaction).
 * Each part runs the federation's own code on two fresh PostgreSQL databases (the
 * origin's and the receiver's), so `bench:federation`'s totals can be split into them.
 *
 *   --vms N      the origin's VMs (default 3334: 10,000 across three clusters)
 *   --batch N    records per batch (default 2000: the listener's BATCH_LIMITS.records)
 *   --json       one JSON object instead of the table
 *
 * Needs the local PostgreSQL on its socket (/var/run/postgresql, or
 * $NOVACRON_FEDBENCH_PGHOST); databases `fedparts_<pid>_{a,b}` are created and dropped.
 */
import { cpSync, existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { Value } from "@sinclair/typebox/value";
import pg from "pg";
import { AssBatch } from "../src/api/types/federation.js";
import { claimClusterIdentity, recordsSince } from "../src/cluster/store/federation.js";
import { MIGRATIONS_DIR } from "../src/cluster/store/migrate.js";
import { Store } from "../src/cluster/store/store.js";
import { ROOT } from "../src/demo/local-cluster.js";
import { MAX_PULL_BYTES } from "../src/federation/ass-wire.js";
import { Publisher } from "../src/federation/publisher.js";
import { applyBatch } from "../src/federation/receiver.js";
import {
  newSigningIdentity,
  privateKeyOf,
  publicKeyFromRaw,
  type SignedRecord,
  verifyRecord,
} from "../src/federation/records.js";
import "../src/federation/formats.js";
import pino from "pino";
import { printTable } from "./table.js";

const PGHOST = process.env.NOVACRON_FEDBENCH_PGHOST ?? "/var/run/postgresql";

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ host: PGHOST, user: "postgres", database: "postgres" });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function timed<T>(f: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: performance.now() - t0, value };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      vms: { type: "string", default: "3334" },
      batch: { type: "string", default: "2000" },
      json: { type: "boolean", default: false },
    },
  });
  // The benchmark build has no copy of the SQL files that Store.open migrates with.
  if (!existsSync(MIGRATIONS_DIR))
    cpSync(path.join(ROOT, "src/cluster/sql"), MIGRATIONS_DIR, { recursive: true });
  const vms = Number(values.vms);
  const batchSize = Number(values.batch);
  const dbs = ["a", "b"].map((x) => `fedparts_${process.pid}_${x}`);
  const stores: Store[] = [];
  try {
    for (const db of dbs) {
      await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await admin(`CREATE DATABASE ${db}`);
      stores.push(
        await Store.open({ url: `postgresql://postgres@/${db}?host=${encodeURIComponent(PGHOST)}` }),
      );
    }
    const [a, b] = stores as [Store, Store];
    const fresh = () => {
      const id = newSigningIdentity();
      return { name: "x", privateKeyPem: id.privateKeyPem, publicKey: id.publicKey };
    };
    const ida = await a.write((tx) => claimClusterIdentity(tx, "origin", fresh));
    const idb = await b.write((tx) => claimClusterIdentity(tx, "receiver", fresh));
    await a.db.query(
      `INSERT INTO images (id, name, disk_digest, disk_format, disk_virtual_bytes)
       VALUES (gen_random_uuid(), 'debian-12', 'sha256:' || repeat('ab', 32), 'qcow2', 2147483648)`,
    );
    await a.db.query(
      `INSERT INTO hosts (id, name, agent_url, agent_version, accel, vcpus, memory_mib, liveness)
       SELECT gen_random_uuid(), 'origin-h' || lpad(g::text, 2, '0'), 'https://10.1.0.' || g || ':7800', '0.1.0',
              'kvm', 64, 262144, 'dead' FROM generate_series(1, 8) g`,
    );
    await a.db.query(
      `WITH h AS (SELECT array_agg(id ORDER BY name) AS ids FROM hosts), i AS (SELECT id FROM images LIMIT 1)
       INSERT INTO vms (id, name, image_id, vcpus, memory_mib, desired_state, state, host_id)
       SELECT gen_random_uuid(), 'origin-vm' || lpad(g::text, 5, '0'), i.id, 2, 2048, 'running', 'running',
              h.ids[1 + g % array_length(h.ids, 1)] FROM generate_series(1, $1) g, h, i`,
      [vms],
    );
    const publisher = new Publisher(
      a,
      ida.id,
      privateKeyOf({ privateKeyPem: ida.signingKeyPem }),
      () => ({ name: "origin", apiUrl: "https://x:1", federation: "x:2", protocol: 1, softwareVersion: "0" }),
      pino({ level: "silent" }),
    );
    const first = await timed(() => publisher.publish());
    const idle = await timed(() => publisher.publish());
    await a.db.query("UPDATE hosts SET cordoned = NOT cordoned WHERE name = 'origin-h01'");
    const change = await timed(() => publisher.publish());

    const roster = {
      self: idb.id,
      keys: new Map([
        [ida.id, publicKeyFromRaw(ida.signingPublicKey)],
        [idb.id, publicKeyFromRaw(idb.signingPublicKey)],
      ]),
      quarantined: new Set<string>(),
      direct: new Set<string>(),
    };
    const all: SignedRecord[] = [];
    const parts: {
      query: number;
      json: number;
      bytes: number;
      parse: number;
      check: number;
      apply: number;
      n: number;
    }[] = [];
    let asked: Record<string, number> = { [ida.id]: 0, [idb.id]: 0 };
    for (;;) {
      const q = await timed(() => recordsSince(a.read, { [ida.id]: asked[ida.id]! }, batchSize + 1));
      const records = q.value.slice(0, batchSize);
      all.push(...(records as SignedRecord[]));
      if (records.length === 0) break;
      const batch: AssBatch = {
        type: "batch",
        vector: {
          [ida.id]: Number((await a.db.query<{ seq: string }>("SELECT seq FROM cluster_info")).rows[0]!.seq),
        },
        seq: 0,
        records,
        truncated: q.value.length > batchSize,
        now: new Date().toISOString(),
      };
      batch.seq = batch.vector[ida.id]!;
      const j = await timed(() => Buffer.from(JSON.stringify(batch)));
      const p = await timed(() => JSON.parse(j.value.toString("utf8")) as unknown);
      const c = await timed(() => Value.Check(AssBatch, p.value));
      if (!c.value) throw new Error("the batch does not match its schema");
      const ap = await timed(() => applyBatch(b, roster, ida.id, asked, p.value as AssBatch));
      if (ap.value.accepted !== records.length)
        throw new Error(`accepted ${ap.value.accepted} of ${records.length}`);
      asked = ap.value.vector;
      parts.push({
        query: q.ms,
        json: j.ms,
        bytes: j.value.length,
        parse: p.ms,
        check: c.ms,
        apply: ap.ms,
        n: records.length,
      });
    }
    const keyA = publicKeyFromRaw(ida.signingPublicKey);
    const verify = await timed(() => all.every((r) => verifyRecord(r, keyA)));
    if (!verify.value) throw new Error("a record does not verify");
    const total = (k: keyof (typeof parts)[number]) => parts.reduce((s, x) => s + x[k], 0);
    const n = total("n");
    const row = {
      vms,
      records: n,
      batches: parts.length,
      publish_first_ms: Math.round(first.ms),
      publish_first_records: first.value.length,
      publish_idle_pass_ms: Math.round(idle.ms),
      publish_one_change_ms: Math.round(change.ms),
      listener_query_ms: Math.round(total("query")),
      batch_json_ms: Math.round(total("json")),
      batch_bytes_max: Math.max(...parts.map((x) => x.bytes)),
      bytes_per_record: Math.round(total("bytes") / n),
      listener_send_limit_bytes: MAX_PULL_BYTES,
      receiver_parse_ms: Math.round(total("parse")),
      receiver_schema_check_ms: Math.round(total("check")),
      receiver_apply_ms: Math.round(total("apply")),
      receiver_apply_us_per_record: Math.round((total("apply") * 1000) / n),
      of_which_signature_check_us_per_record: Math.round((verify.ms * 1000) / all.length),
    };
    if (values.json) console.log(JSON.stringify(row));
    else
      printTable(
        ["part", "value"],
        Object.entries(row).map(([k, v]) => [k, String(v)]),
      );
  } finally {
    for (const s of stores) await s.close().catch(() => {});
    for (const db of dbs) await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
