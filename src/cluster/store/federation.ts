/**
 * The federation's tables (migration 000007, docs/federation.md): this cluster's identity
 * and sequence, its peers (every state change a compare-and-set), every cluster's ASS
 * records and the version vector, peering tokens and the evidence against peers. The
 * federation module decides; this one only reads and writes.
 */
import { randomUUID } from "node:crypto";
import type { SignedRecordWire } from "../../api/types/federation.js";
import { NovaError } from "../../lib/errors.js";
import { PEER, type PeerState } from "../../states/peer.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { hashToken } from "./tokens.js";

/** This cluster as its database records it. */
export interface ClusterIdentityRow {
  id: string;
  name: string;
  signingKeyPem: string;
  signingPublicKey: string;
  seq: number;
}

/**
 * Reads this cluster's identity, creating it on the first start (`fresh` makes the key)
 * and renaming it when `name` is given and differs.
 */
export async function claimClusterIdentity(
  q: Queryable,
  name: string | undefined,
  fresh: () => { name: string; privateKeyPem: string; publicKey: string },
): Promise<ClusterIdentityRow> {
  const existing = await q.query<{ id: string }>("SELECT id FROM cluster_info LIMIT 1");
  if (existing.rows.length === 0) {
    const f = fresh();
    await q.query(
      `INSERT INTO cluster_info (id, name, signing_key_pem, signing_public_key) VALUES ($1, $2, $3, $4)
       ON CONFLICT (singleton) DO NOTHING`,
      [randomUUID(), name ?? f.name, f.privateKeyPem, f.publicKey],
    );
  } else if (name) {
    await q.query("UPDATE cluster_info SET name = $1 WHERE name <> $1", [name]);
  }
  const row = await readClusterIdentity(q);
  if (!row.signingKeyPem) {
    // A database from before federation has a cluster_info row without a key.
    const f = fresh();
    await q.query(
      "UPDATE cluster_info SET signing_key_pem = $1, signing_public_key = $2 WHERE signing_key_pem = ''",
      [f.privateKeyPem, f.publicKey],
    );
    return readClusterIdentity(q);
  }
  return row;
}

/** This cluster's identity row. */
export async function readClusterIdentity(q: ReadQueryable): Promise<ClusterIdentityRow> {
  const { rows } = await q.query<{
    id: string;
    name: string;
    signing_key_pem: string;
    signing_public_key: string;
    seq: string;
  }>("SELECT id, name, signing_key_pem, signing_public_key, seq FROM cluster_info LIMIT 1");
  const r = rows[0];
  if (!r)
    throw new NovaError("NOVA_INTERNAL", "cluster_info has no row: the server did not claim its identity");
  return {
    id: r.id,
    name: r.name,
    signingKeyPem: r.signing_key_pem,
    signingPublicKey: r.signing_public_key,
    seq: Number(r.seq),
  };
}

/** Takes the next `count` versions of this cluster's records (row-locked: replicas take turns). */
export async function takeVersions(q: Queryable, count: number): Promise<number> {
  const { rows } = await q.query<{ seq: string }>("UPDATE cluster_info SET seq = seq + $1 RETURNING seq", [
    count,
  ]);
  return Number(rows[0]!.seq) - count + 1;
}

/** Raises this cluster's sequence to at least `seq` (our own records came back newer than we knew). */
export async function raiseOwnSeq(q: Queryable, seq: number): Promise<void> {
  await q.query("UPDATE cluster_info SET seq = $1 WHERE seq < $1", [seq]);
}

// ---- records ---------------------------------------------------------------------------

interface RecordRow {
  origin: string;
  kind: string;
  id: string;
  version: string;
  deleted: boolean;
  body_json: string;
  issued_at: string;
  sig: string;
}

const RECORD_COLUMNS = "origin, kind, id, version, deleted, body_json, issued_at, sig";
/** The same, qualified, for queries that join. */
const R_COLUMNS = "r.origin, r.kind, r.id, r.version, r.deleted, r.body_json, r.issued_at, r.sig";

function toRecord(r: RecordRow): SignedRecordWire {
  return {
    origin: r.origin,
    kind: r.kind as SignedRecordWire["kind"],
    id: r.id,
    version: Number(r.version),
    deleted: r.deleted,
    body: JSON.parse(r.body_json) as SignedRecordWire["body"],
    issuedAt: r.issued_at,
    sig: r.sig,
  };
}

/**
 * Stores records, each as the newest of its key (an older version never replaces a newer
 * one); of several records for one key only the highest version is kept. `bodyJson` is the
 * exact text signed, kept so that a relayed record verifies byte for byte; jsonb keeps a
 * queryable copy. One statement per 5,000 records. Returns how many were written.
 */
export async function putRecords(
  q: Queryable,
  records: readonly { record: SignedRecordWire; bodyJson: string }[],
): Promise<number> {
  const newest = new Map<string, { record: SignedRecordWire; bodyJson: string }>();
  for (const r of records) {
    const k = `${r.record.origin}/${r.record.kind}/${r.record.id}`;
    const had = newest.get(k);
    if (!had || had.record.version < r.record.version) newest.set(k, r);
  }
  const rows = [...newest.values()];
  let written = 0;
  for (let i = 0; i < rows.length; i += 5000) {
    const chunk = rows.slice(i, i + 5000);
    const { rowCount } = await q.query(
      `INSERT INTO fed_records (origin, kind, id, version, deleted, body, body_json, issued_at, sig)
       SELECT origin, kind, id, version, deleted, body_json::jsonb, body_json, issued_at, sig
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::text[], $7::text[], $8::text[])
           AS t(origin, kind, id, version, deleted, body_json, issued_at, sig)
       ON CONFLICT (origin, kind, id) DO UPDATE SET version = EXCLUDED.version, deleted = EXCLUDED.deleted,
         body = EXCLUDED.body, body_json = EXCLUDED.body_json, issued_at = EXCLUDED.issued_at,
         sig = EXCLUDED.sig, received_at = now()
       WHERE fed_records.version < EXCLUDED.version`,
      [
        chunk.map((r) => r.record.origin),
        chunk.map((r) => r.record.kind),
        chunk.map((r) => r.record.id),
        chunk.map((r) => r.record.version),
        chunk.map((r) => r.record.deleted),
        chunk.map((r) => r.bodyJson),
        chunk.map((r) => r.record.issuedAt),
        chunk.map((r) => r.record.sig),
      ],
    );
    written += rowCount;
  }
  return written;
}

/** The record held for a key. */
export async function getRecord(
  q: ReadQueryable,
  origin: string,
  kind: string,
  id: string,
): Promise<SignedRecordWire | undefined> {
  const { rows } = await q.query<RecordRow>(
    `SELECT ${RECORD_COLUMNS} FROM fed_records WHERE origin = $1 AND kind = $2 AND id = $3`,
    [origin, kind, id],
  );
  return rows[0] ? toRecord(rows[0]) : undefined;
}

/** The record held from `origin` at `version`, whatever its key. */
export async function getRecordAtVersion(
  q: ReadQueryable,
  origin: string,
  version: number,
): Promise<SignedRecordWire | undefined> {
  const { rows } = await q.query<RecordRow>(
    `SELECT ${RECORD_COLUMNS} FROM fed_records WHERE origin = $1 AND version = $2`,
    [origin, version],
  );
  return rows[0] ? toRecord(rows[0]) : undefined;
}

/** Another origin holding a live record of the same kind and id, if any. */
export async function otherOwner(
  q: ReadQueryable,
  kind: string,
  id: string,
  origin: string,
): Promise<string | undefined> {
  const { rows } = await q.query<{ origin: string }>(
    "SELECT origin FROM fed_records WHERE kind = $1 AND id = $2 AND origin <> $3 AND NOT deleted ORDER BY origin LIMIT 1",
    [kind, id, origin],
  );
  return rows[0]?.origin;
}

/** This cluster's own records as (kind/id → version, body text, tombstone), for the publisher's diff. */
export async function ownRecordIndex(
  q: ReadQueryable,
  self: string,
): Promise<Map<string, { version: number; bodyJson: string; deleted: boolean }>> {
  const { rows } = await q.query<{
    kind: string;
    id: string;
    version: string;
    body_json: string;
    deleted: boolean;
  }>("SELECT kind, id, version, body_json, deleted FROM fed_records WHERE origin = $1", [self]);
  return new Map(
    rows.map((r) => [
      `${r.kind}/${r.id}`,
      { version: Number(r.version), bodyJson: r.body_json, deleted: r.deleted },
    ]),
  );
}

/**
 * The records past `vector`, for the origins it names, in (origin, version) order, at most
 * `limit` of them and at most about `maxBytes` of JSON.
 */
export async function recordsSince(
  q: ReadQueryable,
  vector: Record<string, number>,
  limit: number,
): Promise<SignedRecordWire[]> {
  const origins = Object.keys(vector).sort();
  if (origins.length === 0) return [];
  const { rows } = await q.query<RecordRow>(
    `SELECT ${R_COLUMNS} FROM fed_records r
       JOIN (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS v(origin, seq)) v ON v.origin = r.origin
     WHERE r.version > v.seq
     ORDER BY r.origin, r.version
     LIMIT $3`,
    [origins, origins.map((o) => vector[o] ?? 0), limit],
  );
  return rows.map(toRecord);
}

/** Live records of one kind, with their origin (the global view). */
export async function liveRecords(q: ReadQueryable, kind: string): Promise<SignedRecordWire[]> {
  const { rows } = await q.query<RecordRow>(
    `SELECT ${RECORD_COLUMNS} FROM fed_records WHERE kind = $1 AND NOT deleted ORDER BY origin, id`,
    [kind],
  );
  return rows.map(toRecord);
}

/** Per origin: live records by kind and the newest version held. */
export async function recordCounts(
  q: ReadQueryable,
): Promise<Map<string, { hosts: number; vms: number; images: number; version: number }>> {
  const { rows } = await q.query<{ origin: string; kind: string; live: string; top: string }>(
    `SELECT origin, kind, count(*) FILTER (WHERE NOT deleted) AS live, max(version) AS top
       FROM fed_records GROUP BY origin, kind`,
  );
  const out = new Map<string, { hosts: number; vms: number; images: number; version: number }>();
  for (const r of rows) {
    const c = out.get(r.origin) ?? { hosts: 0, vms: 0, images: 0, version: 0 };
    if (r.kind === "host") c.hosts = Number(r.live);
    if (r.kind === "vm") c.vms = Number(r.live);
    if (r.kind === "image") c.images = Number(r.live);
    c.version = Math.max(c.version, Number(r.top));
    out.set(r.origin, c);
  }
  return out;
}

/** Deletes every record of `origin` (a removed peer). */
export async function deleteRecordsOf(q: Queryable, origin: string): Promise<void> {
  await q.query("DELETE FROM fed_records WHERE origin = $1", [origin]);
  await q.query("DELETE FROM fed_vector WHERE origin = $1", [origin]);
}

// ---- vector ----------------------------------------------------------------------------

/** The version vector as stored (origins never heard of are absent). */
export async function readVector(q: ReadQueryable): Promise<Record<string, number>> {
  const { rows } = await q.query<{ origin: string; seq: string }>("SELECT origin, seq FROM fed_vector");
  return Object.fromEntries(rows.map((r) => [r.origin, Number(r.seq)]));
}

/** Raises vector entries (never lowers one). */
export async function raiseVector(q: Queryable, entries: Record<string, number>): Promise<void> {
  for (const [origin, seq] of Object.entries(entries)) {
    await q.query(
      `INSERT INTO fed_vector (origin, seq) VALUES ($1, $2)
       ON CONFLICT (origin) DO UPDATE SET seq = EXCLUDED.seq WHERE fed_vector.seq < EXCLUDED.seq`,
      [origin, seq],
    );
  }
}

// ---- peers -----------------------------------------------------------------------------

/** What a new peer row holds. */
export interface NewPeer {
  id: string;
  name: string;
  apiUrl: string;
  fedHost: string;
  fedPort: number;
  caPem: string;
  caFingerprint: string;
  signingPublicKey: string;
  protocol: number;
}

/** A peer row. */
export interface PeerRow extends NewPeer {
  state: PeerState;
  addedAt: string;
  lastContactAt: string | null;
  /** Milliseconds since the last contact by the database's clock (the one that wrote it), null: never. */
  contactAgeMs: number | null;
  lastError: string;
  peerSeq: number;
  quarantineKind: string | null;
  quarantineReason: string;
  quarantinedAt: string | null;
}

interface PeerDbRow {
  id: string;
  name: string;
  state: string;
  api_url: string;
  fed_host: string;
  fed_port: number;
  ca_pem: string;
  ca_fingerprint: string;
  signing_public_key: string;
  protocol: number;
  added_at: Date;
  last_contact_at: Date | null;
  contact_age_ms: number | string | null;
  last_error: string;
  peer_seq: string;
  quarantine_kind: string | null;
  quarantine_reason: string;
  quarantined_at: Date | null;
}

const iso = (d: Date | null): string | null => (d ? new Date(d).toISOString() : null);

function toPeer(r: PeerDbRow): PeerRow {
  return {
    id: r.id,
    name: r.name,
    state: r.state as PeerState,
    apiUrl: r.api_url,
    fedHost: r.fed_host,
    fedPort: r.fed_port,
    caPem: r.ca_pem,
    caFingerprint: r.ca_fingerprint,
    signingPublicKey: r.signing_public_key,
    protocol: r.protocol,
    addedAt: iso(r.added_at)!,
    lastContactAt: iso(r.last_contact_at),
    contactAgeMs: r.contact_age_ms === null ? null : Number(r.contact_age_ms),
    lastError: r.last_error,
    peerSeq: Number(r.peer_seq),
    quarantineKind: r.quarantine_kind,
    quarantineReason: r.quarantine_reason,
    quarantinedAt: iso(r.quarantined_at),
  };
}

/**
 * Adds a peer (state active). A removed row of the same cluster is replaced: peering again
 * after a removal starts afresh. NOVA_FED_PEER_EXISTS when it is a live peer already,
 * NOVA_FED_NAME_CLASH when a live peer has its name.
 */
export async function insertPeer(q: Queryable, p: NewPeer): Promise<PeerRow> {
  const live = (await listPeers(q)).filter((x) => x.state !== "removed");
  const same = live.find((x) => x.id === p.id);
  if (same) {
    throw new NovaError("NOVA_FED_PEER_EXISTS", `Cluster ${same.name} (${p.id}) is already a peer.`, {
      details: { peer: same.name, id: p.id },
    });
  }
  const clash = live.find((x) => x.name === p.name);
  if (clash) {
    throw new NovaError(
      "NOVA_FED_NAME_CLASH",
      `A peer named ${p.name} exists already (cluster ${clash.id}); two clusters of a federation must have different names. Rename one (novacron server --cluster-name NAME) and make a new token.`,
      { details: { name: p.name, existing: clash.id, incoming: p.id } },
    );
  }
  await q.query("DELETE FROM fed_peers WHERE id = $1 AND state = 'removed'", [p.id]);
  const { rows } = await q.query<PeerDbRow>(
    `INSERT INTO fed_peers (id, name, state, api_url, fed_host, fed_port, ca_pem, ca_fingerprint, signing_public_key, protocol)
     VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9) RETURNING *, NULL::float8 AS contact_age_ms`,
    [p.id, p.name, p.apiUrl, p.fedHost, p.fedPort, p.caPem, p.caFingerprint, p.signingPublicKey, p.protocol],
  );
  return toPeer(rows[0]!);
}

/** Every peer, removed ones included, by name. */
export async function listPeers(q: ReadQueryable): Promise<PeerRow[]> {
  // The age is the database's arithmetic on its own timestamps, so a server whose clock is
  // off never calls a peer stale (or current) by mistake.
  const { rows } = await q.query<PeerDbRow>(
    `SELECT *, (EXTRACT(EPOCH FROM (now() - last_contact_at)) * 1000)::float8 AS contact_age_ms
       FROM fed_peers ORDER BY name, added_at`,
  );
  return rows.map(toPeer);
}

/** A live (not removed) peer by name or id; NOVA_FED_PEER_UNKNOWN otherwise. */
export async function getLivePeer(q: ReadQueryable, nameOrId: string): Promise<PeerRow> {
  const peer = (await listPeers(q)).find(
    (p) => p.state !== "removed" && (p.name === nameOrId || p.id === nameOrId),
  );
  if (!peer) {
    throw new NovaError(
      "NOVA_FED_PEER_UNKNOWN",
      `No peer cluster is named ${nameOrId}. List them with: novacron cluster peer list`,
      { details: { peer: nameOrId } },
    );
  }
  return peer;
}

/**
 * Moves a peer from `from` to `to` (compare-and-set); NOVA_STATE_CHANGED when another
 * writer moved it first. Quarantine records its kind and reason.
 */
export async function transitionPeer(
  q: Queryable,
  id: string,
  from: PeerState,
  to: PeerState,
  quarantine?: { kind: string; reason: string },
): Promise<void> {
  PEER.assertTransition(`peer ${id}`, from, to);
  const { rowCount } = await q.query(
    `UPDATE fed_peers SET state = $3, state_changed_at = now(),
       quarantine_kind = CASE WHEN $3 = 'quarantined' THEN $4 WHEN $3 = 'active' THEN NULL ELSE quarantine_kind END,
       quarantine_reason = CASE WHEN $3 = 'quarantined' THEN $5 WHEN $3 = 'active' THEN '' ELSE quarantine_reason END,
       quarantined_at = CASE WHEN $3 = 'quarantined' THEN now() WHEN $3 = 'active' THEN NULL ELSE quarantined_at END,
       removed_at = CASE WHEN $3 = 'removed' THEN now() ELSE removed_at END
     WHERE id = $1 AND state = $2`,
    [id, from, to, quarantine?.kind ?? null, quarantine?.reason ?? ""],
  );
  if (rowCount !== 1) {
    throw new NovaError("NOVA_STATE_CHANGED", `Peer ${id} is no longer ${from}; it was changed meanwhile.`, {
      details: { peer: id, from, to },
    });
  }
}

/**
 * Follows what a peer says of itself in its own signed `cluster` record: a new name
 * (unless another live peer has it already) and a new federation address.
 */
export async function followPeerCard(
  q: Queryable,
  id: string,
  card: { name?: string; fedHost?: string; fedPort?: number },
): Promise<void> {
  if (card.name) {
    await q.query(
      `UPDATE fed_peers SET name = $2 WHERE id = $1 AND state <> 'removed' AND name <> $2
         AND NOT EXISTS (SELECT 1 FROM fed_peers o WHERE o.name = $2 AND o.state <> 'removed' AND o.id <> $1)`,
      [id, card.name],
    );
  }
  if (card.fedHost && card.fedPort) {
    await q.query(
      "UPDATE fed_peers SET fed_host = $2, fed_port = $3 WHERE id = $1 AND (fed_host <> $2 OR fed_port <> $3)",
      [id, card.fedHost, card.fedPort],
    );
  }
}

/** A live peer by id, fresh from the table. */
export async function getPeerById(q: ReadQueryable, id: string): Promise<PeerRow | undefined> {
  return (await listPeers(q)).find((p) => p.id === id && p.state !== "removed");
}

/** Notes a successful exchange (and the peer's sequence then) or a failed one. */
export async function notePeerContact(
  q: Queryable,
  id: string,
  outcome: { ok: true; peerSeq: number } | { ok: false; error: string },
): Promise<void> {
  if (outcome.ok) {
    await q.query(
      "UPDATE fed_peers SET last_contact_at = now(), last_error = '', peer_seq = GREATEST(peer_seq, $2) WHERE id = $1",
      [id, outcome.peerSeq],
    );
  } else {
    await q.query("UPDATE fed_peers SET last_error = $2 WHERE id = $1", [id, outcome.error.slice(0, 500)]);
  }
}

// ---- peering tokens --------------------------------------------------------------------

/** Stores a new peering token's hash; returns its id and expiry. */
export async function createPeeringToken(
  q: Queryable,
  secret: string,
  ttlSeconds: number,
  createdBy: string,
): Promise<{ id: string; expiresAt: string }> {
  const id = randomUUID();
  const { rows } = await q.query<{ expires_at: Date }>(
    `INSERT INTO fed_tokens (id, token_hash, created_by, expires_at)
     VALUES ($1, $2, $3, now() + ($4::int * interval '1 second')) RETURNING expires_at`,
    [id, hashToken(secret), createdBy, ttlSeconds],
  );
  return { id, expiresAt: new Date(rows[0]!.expires_at).toISOString() };
}

/**
 * Checks a peering token's secret without using it: NOVA_FED_TOKEN_INVALID (unknown),
 * NOVA_FED_TOKEN_USED, NOVA_FED_TOKEN_EXPIRED. Returns its id for `useToken`.
 */
export async function checkPeeringToken(q: ReadQueryable, secret: string): Promise<string> {
  const { rows } = await q.query<{ id: string; used_at: Date | null; expired: boolean }>(
    "SELECT id, used_at, expires_at <= now() AS expired FROM fed_tokens WHERE token_hash = $1",
    [hashToken(secret)],
  );
  const row = rows[0];
  if (!row) {
    throw new NovaError(
      "NOVA_FED_TOKEN_INVALID",
      "This peering token is unknown to this cluster. Make one here with: novacron cluster peer token",
    );
  }
  if (row.used_at) {
    throw new NovaError(
      "NOVA_FED_TOKEN_USED",
      `This peering token was used already (at ${new Date(row.used_at).toISOString()}); tokens are one-time. Make a new one with: novacron cluster peer token`,
    );
  }
  if (row.expired) {
    throw new NovaError(
      "NOVA_FED_TOKEN_EXPIRED",
      "This peering token has expired. Make a new one with: novacron cluster peer token",
    );
  }
  return row.id;
}

/** Uses a token (compare-and-set: once ever); NOVA_FED_TOKEN_USED if a concurrent use won. */
export async function useToken(q: Queryable, id: string, by: string): Promise<void> {
  const { rowCount } = await q.query(
    "UPDATE fed_tokens SET used_at = now(), used_by = $2 WHERE id = $1 AND used_at IS NULL",
    [id, by],
  );
  if (rowCount !== 1) {
    throw new NovaError("NOVA_FED_TOKEN_USED", "This peering token was used already; tokens are one-time.");
  }
}

// ---- evidence --------------------------------------------------------------------------

/** Stores the proof of a violation. */
export async function addEvidence(
  q: Queryable,
  e: { peerId: string; senderId: string; kind: string; detail: string; records: unknown[] },
): Promise<void> {
  await q.query(
    "INSERT INTO fed_evidence (peer_id, sender_id, kind, detail, records) VALUES ($1, $2, $3, $4, $5::jsonb)",
    [e.peerId, e.senderId, e.kind, e.detail, JSON.stringify(e.records)],
  );
}

/** Stored proofs, newest first, optionally for one peer. */
export async function listEvidence(
  q: ReadQueryable,
  peerId?: string,
): Promise<
  {
    id: number;
    peer: string;
    sender: string;
    kind: string;
    detail: string;
    records: unknown[];
    detectedAt: string;
  }[]
> {
  const { rows } = await q.query<{
    id: string;
    peer_id: string;
    sender_id: string;
    kind: string;
    detail: string;
    records: unknown[] | string;
    detected_at: Date;
  }>(
    `SELECT * FROM fed_evidence ${peerId ? "WHERE peer_id = $1" : ""} ORDER BY id DESC LIMIT 1000`,
    peerId ? [peerId] : [],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    peer: r.peer_id,
    sender: r.sender_id,
    kind: r.kind,
    detail: r.detail,
    records: typeof r.records === "string" ? (JSON.parse(r.records) as unknown[]) : r.records,
    detectedAt: new Date(r.detected_at).toISOString(),
  }));
}

/** How many proofs are stored per peer. */
export async function evidenceCounts(q: ReadQueryable): Promise<Map<string, number>> {
  const { rows } = await q.query<{ peer_id: string; n: string }>(
    "SELECT peer_id, count(*) AS n FROM fed_evidence GROUP BY peer_id",
  );
  return new Map(rows.map((r) => [r.peer_id, Number(r.n)]));
}

// ---- what this cluster publishes ---------------------------------------------------------

/** The bodies this cluster's records should have now, by `kind/id` (records.ts signs them). */
export async function ownedState(q: ReadQueryable): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  const hosts = await q.query<{
    id: string;
    name: string;
    liveness: string;
    cordoned: boolean;
    accel: string;
    vcpus: number;
    memory_mib: number;
    qemu: { version?: string } | string | null;
  }>("SELECT id, name, liveness, cordoned, accel, vcpus, memory_mib, qemu FROM hosts");
  const hostNames = new Map<string, string>();
  for (const h of hosts.rows) {
    hostNames.set(h.id, h.name);
    const qemu = typeof h.qemu === "string" ? (JSON.parse(h.qemu) as { version?: string }) : h.qemu;
    out.set(`host/${h.id}`, {
      name: h.name,
      liveness: h.liveness,
      cordoned: h.cordoned,
      accel: h.accel,
      vcpus: h.vcpus,
      memoryMiB: h.memory_mib,
      qemuVersion: qemu?.version ?? null,
    });
  }
  const images = await q.query<{
    id: string;
    name: string;
    disk_digest: string;
    disk_format: string;
    disk_virtual_bytes: string;
  }>("SELECT id, name, disk_digest, disk_format, disk_virtual_bytes FROM images");
  const imageNames = new Map<string, string>();
  for (const i of images.rows) {
    imageNames.set(i.id, i.name);
    out.set(`image/${i.id}`, {
      name: i.name,
      diskDigest: i.disk_digest,
      diskFormat: i.disk_format,
      diskVirtualBytes: Number(i.disk_virtual_bytes),
    });
  }
  const vms = await q.query<{
    id: string;
    name: string;
    state: string;
    desired_state: string;
    host_id: string | null;
    vcpus: number;
    memory_mib: number;
    image_id: string;
    owner_epoch: number;
  }>(
    // Only the VMs this cluster owns: one released to another cluster is that cluster's to
    // publish, one still arriving is still its source's (docs/federation.md §10).
    "SELECT id, name, state, desired_state, host_id, vcpus, memory_mib, image_id, owner_epoch FROM vms WHERE owner_cluster_id IS NULL AND state <> 'arriving'",
  );
  for (const v of vms.rows) {
    out.set(`vm/${v.id}`, {
      epoch: v.owner_epoch,
      name: v.name,
      state: v.state,
      desiredState: v.desired_state,
      host: v.host_id ? (hostNames.get(v.host_id) ?? v.host_id) : null,
      vcpus: v.vcpus,
      memoryMiB: v.memory_mib,
      image: imageNames.get(v.image_id) ?? v.image_id,
    });
  }
  return out;
}

/** Held records for many keys at once: (origin, kind, id) → record. */
export async function recordsByKeys(
  q: ReadQueryable,
  keys: readonly { origin: string; kind: string; id: string }[],
): Promise<Map<string, SignedRecordWire>> {
  if (keys.length === 0) return new Map();
  const { rows } = await q.query<RecordRow>(
    `SELECT ${R_COLUMNS} FROM fed_records r
       JOIN (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(origin, kind, id))
         k ON k.origin = r.origin AND k.kind = r.kind AND k.id = r.id`,
    [keys.map((k) => k.origin), keys.map((k) => k.kind), keys.map((k) => k.id)],
  );
  return new Map(rows.map((r) => [`${r.origin}/${r.kind}/${r.id}`, toRecord(r)]));
}

/** Held records at many (origin, version) pairs at once: `origin@version` → record. */
export async function recordsByVersions(
  q: ReadQueryable,
  keys: readonly { origin: string; version: number }[],
): Promise<Map<string, SignedRecordWire>> {
  if (keys.length === 0) return new Map();
  const { rows } = await q.query<RecordRow>(
    `SELECT ${R_COLUMNS} FROM fed_records r
       JOIN (SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS k(origin, version))
         k ON k.origin = r.origin AND k.version = r.version`,
    [keys.map((k) => k.origin), keys.map((k) => k.version)],
  );
  return new Map(rows.map((r) => [`${r.origin}@${r.version}`, toRecord(r)]));
}

/** For many (kind, id): the origins holding a live record of it, with the epoch each states. */
export async function liveOwners(
  q: ReadQueryable,
  keys: readonly { kind: string; id: string }[],
): Promise<Map<string, LiveOwner[]>> {
  if (keys.length === 0) return new Map();
  const { rows } = await q.query<{ kind: string; id: string; origin: string; epoch: string | null }>(
    `SELECT r.kind, r.id, r.origin, r.body->>'epoch' AS epoch FROM fed_records r
       JOIN (SELECT * FROM unnest($1::text[], $2::text[]) AS k(kind, id)) k ON k.kind = r.kind AND k.id = r.id
     WHERE NOT r.deleted ORDER BY r.origin`,
    [keys.map((k) => k.kind), keys.map((k) => k.id)],
  );
  const out = new Map<string, LiveOwner[]>();
  for (const r of rows) {
    const key = `${r.kind}/${r.id}`;
    const epoch = r.epoch === null ? undefined : Number(r.epoch);
    out.set(key, [
      ...(out.get(key) ?? []),
      { origin: r.origin, ...(Number.isInteger(epoch) ? { epoch } : {}) },
    ]);
  }
  return out;
}

/** A cluster holding a live record of a key, with the owner epoch the record states (VMs). */
export interface LiveOwner {
  origin: string;
  epoch?: number;
}

/**
 * The VMs this cluster released, by id → the (cluster, epoch) it released each to: what
 * makes another cluster's record of one of them at that epoch legitimate (judge.ts).
 */
export async function releasedVms(
  q: ReadQueryable,
  vmIds: readonly string[],
): Promise<Map<string, { to: string; epoch: number }[]>> {
  // Record ids come from peers: only well-formed ones reach the uuid cast.
  const ids = vmIds.filter((id) =>
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id),
  );
  if (ids.length === 0) return new Map();
  const { rows } = await q.query<{ vm_id: string; target_cluster_id: string; from_epoch: number }>(
    `SELECT vm_id, target_cluster_id, from_epoch FROM acp_outgoing
     WHERE vm_id = ANY($1::uuid[]) AND state IN ('released', 'completed', 'reclaimed')`,
    [ids],
  );
  const out = new Map<string, { to: string; epoch: number }[]>();
  for (const r of rows)
    out.set(r.vm_id, [...(out.get(r.vm_id) ?? []), { to: r.target_cluster_id, epoch: r.from_epoch + 1 }]);
  return out;
}

/**
 * Whether `origin` publishes a live VM named `name` other than VM `vmId` itself (a
 * destination name clash; the VM's own record there is one it has not withdrawn yet).
 */
export async function peerHasVmNamed(
  q: ReadQueryable,
  origin: string,
  name: string,
  vmId: string,
): Promise<boolean> {
  const { rows } = await q.query(
    "SELECT 1 FROM fed_records WHERE origin = $1 AND kind = 'vm' AND NOT deleted AND body->>'name' = $2 AND id <> $3 LIMIT 1",
    [origin, name, vmId],
  );
  return rows.length > 0;
}

/** Whether `origin` publishes a live host named `name`. */
export async function peerHasHostNamed(q: ReadQueryable, origin: string, name: string): Promise<boolean> {
  const { rows } = await q.query(
    "SELECT 1 FROM fed_records WHERE origin = $1 AND kind = 'host' AND NOT deleted AND body->>'name' = $2 LIMIT 1",
    [origin, name],
  );
  return rows.length > 0;
}
