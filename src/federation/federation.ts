/**
 * The federation of this cluster (docs/federation.md): its identity, the publisher of its
 * records, the ASS listener peers pull from, one link per active peer, peering (tokens,
 * redeeming, adding, removing, lifting a quarantine) and the global view the API shows.
 * The server starts one; every decision about a record is the judge's, every write the
 * store's.
 */
import { type KeyObject, randomBytes, X509Certificate } from "node:crypto";
import { hostname } from "node:os";
import { Value } from "@sinclair/typebox/value";
import "./formats.js";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { AcpRequest, Handoff } from "../api/types/acp.js";
import type { ClusterEvent } from "../api/types/events.js";
import {
  type ClusterCard,
  FEDERATION_PROTOCOL,
  type FederatedCluster,
  type FederatedVm,
  type Peer,
  type PeerRemoved,
  type RedeemRequest,
  type RedeemResponse,
  RedeemResponse as RedeemResponseSchema,
} from "../api/types/federation.js";
import { type IncomingHandoff, listRecentHandoffs, type OutgoingHandoff } from "../cluster/store/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import { appendEvent } from "../cluster/store/events.js";
import {
  checkPeeringToken,
  claimClusterIdentity,
  createPeeringToken,
  deleteRecordsOf,
  evidenceCounts,
  getLivePeer,
  getPeerById,
  insertPeer,
  listEvidence,
  listPeers,
  liveRecords,
  type NewPeer,
  type PeerRow,
  readVector,
  recordCounts,
  transitionPeer,
  useToken,
} from "../cluster/store/federation.js";
import type { Store } from "../cluster/store/store.js";
import { describeError, NovaError } from "../lib/errors.js";
import { waitFor } from "../lib/wait.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { fingerprintOf, verifyIssued } from "../security/pki.js";
import { clusterFetch, fetchPresentedCa, peerIdentityError } from "../security/tls-client.js";
import { VERSION } from "../version.js";
import { AcpClient } from "./acp/acp-client.js";
import { type AcpMetrics, createAcpMetrics } from "./acp/metrics.js";
import type { SourceCopies, TargetCopies } from "./acp/ports.js";
import { AcpService } from "./acp/service.js";
import { AssListener } from "./ass-listener.js";
import { Changes } from "./changes.js";
import { recordEpoch } from "./judge.js";
import { createFederationMetrics, type FederationMetrics } from "./metrics.js";
import { PeerLink } from "./peer-link.js";
import { formatPeeringToken, parsePeeringToken } from "./peering-token.js";
import { Publisher } from "./publisher.js";
import type { Roster } from "./receiver.js";
import { newSigningIdentity, privateKeyOf, publicKeyFromRaw, signingKeyFingerprint } from "./records.js";

/** How a server runs its federation. */
export interface FederationOptions {
  store: Store;
  log: Logger;
  registry?: Registry;
  /** This cluster's name; kept in the database (default on first start: the machine's host name). */
  name?: string;
  /** Where peers reach this cluster's REST API (for peering); known once the API listens. */
  apiUrl: () => string;
  /** Where the ASS listener binds, and the host peers are told to dial. */
  listenHost: string;
  listenPort: number;
  advertiseHost: string;
  pki: { caPem: string; caFingerprint: string; certChainPem: string; keyPem: string };
  /** Longest a pull waits at a peer for news (the idle heartbeat). @defaultValue 5000 */
  heartbeatMs?: number;
  /** A peer not heard from for this long is shown as stale. @defaultValue 3 heartbeats + 5 s */
  staleAfterMs?: number;
  /** Full publish pass interval (changes made here wake it at once). @defaultValue 5000 */
  publishIntervalMs?: number;
  /**
   * ACP (docs/federation.md §10): the copies of VMs on this cluster's hosts, and whether a
   * migration run carries a hand-off's transfer. Without it this cluster refuses hand-offs.
   */
  acp?: { source: SourceCopies; target: TargetCopies; transferActive: (handoffId: string) => boolean };
}

/** A cluster name from a host name: lower-case, dashes for anything else, 63 at most. */
export function defaultClusterName(): string {
  const n = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63);
  return n.replace(/-+$/, "") || "cluster";
}

/** The running federation of this cluster. */
export class Federation {
  private readonly links = new Map<string, PeerLink>();
  private readonly changes = new Changes();
  private readonly keys = new Map<string, KeyObject>();
  private readonly publishLoop: WakeableLoop;
  private readonly refreshLoop: WakeableLoop;
  private readonly metrics: FederationMetrics | undefined;
  private unsubscribe: () => void = () => {};
  private listener!: AssListener;
  private closed = false;
  private readonly publisher: Publisher;
  private readonly staleAfterMs: number;
  private fedPort = 0;
  private readonly acpClients = new Map<string, AcpClient>();
  private readonly acpMetrics: AcpMetrics | undefined;
  /** The hand-offs of this cluster (absent when the server runs without ACP). */
  acp: AcpService | undefined;

  private constructor(
    private readonly o: FederationOptions,
    readonly self: { id: string; name: string; publicKey: string },
    signingKey: KeyObject,
  ) {
    this.acpMetrics = o.acp && o.registry ? createAcpMetrics(o.registry) : undefined;
    if (o.acp)
      this.acp = new AcpService({
        store: o.store,
        self,
        signingKey,
        peers: async () => (await listPeers(o.store.read)).filter((p) => p.state !== "removed"),
        client: (peerId) => this.acpClient(peerId),
        source: o.acp.source,
        target: o.acp.target,
        transferActive: o.acp.transferActive,
        log: o.log.child({ component: "acp" }),
        ...(this.acpMetrics ? { metrics: this.acpMetrics } : {}),
      });
    const heartbeatMs = o.heartbeatMs ?? 5000;
    this.staleAfterMs = o.staleAfterMs ?? heartbeatMs * 3 + 5000;
    this.publisher = new Publisher(o.store, self.id, signingKey, () => this.summary(), o.log);
    this.publishLoop = new WakeableLoop({
      pass: async () => {
        const written = await this.publisher.publish();
        if (written.length > 0) this.changes.signal();
      },
      intervalMs: o.publishIntervalMs ?? 5000,
      onError: (err) => o.log.error({ err: describeError(err) }, "federation publish failed; will retry"),
    });
    this.refreshLoop = new WakeableLoop({
      pass: () => this.refresh(),
      intervalMs: 5000,
      onError: (err) => o.log.error({ err: describeError(err) }, "federation refresh failed; will retry"),
    });
    this.metrics = o.registry ? createFederationMetrics(o.registry, (m) => this.collect(m)) : undefined;
  }

  /** Claims the identity and starts the listener; `run()` starts publishing and the links. */
  static async start(o: FederationOptions): Promise<Federation> {
    const identity = await o.store.write((tx) =>
      claimClusterIdentity(tx, o.name, () => {
        const id = newSigningIdentity();
        return { name: defaultClusterName(), privateKeyPem: id.privateKeyPem, publicKey: id.publicKey };
      }),
    );
    const fed = new Federation(
      o,
      { id: identity.id, name: identity.name, publicKey: identity.signingPublicKey },
      privateKeyOf({ privateKeyPem: identity.signingKeyPem }),
    );
    const peers = (await listPeers(o.store.read)).filter((p) => p.state !== "removed");
    fed.listener = await AssListener.start(
      {
        store: o.store,
        self: fed.self,
        peers: async () => (await listPeers(o.store.read)).filter((p) => p.state !== "removed"),
        changes: fed.changes,
        log: o.log,
        onBytes: (n) => fed.metrics?.bytes.inc({ direction: "sent" }, n),
        ...(fed.acp ? { acp: (peer: PeerRow, request: AcpRequest) => fed.acp!.answer(peer, request) } : {}),
      },
      o.listenHost,
      o.listenPort,
      {
        certChainPem: o.pki.certChainPem,
        keyPem: o.pki.keyPem,
        ownCaPem: o.pki.caPem,
        peerCas: peers.map((p) => p.caPem),
      },
    );
    fed.fedPort = fed.listener.port;
    fed.unsubscribe = o.store.bus.subscribe((e) => {
      if (/^(vm|host|image)\./.test(e.type)) fed.publishLoop.wake();
    });
    return fed;
  }

  /** Starts publishing and the links to the peers (once the API's URL is known). */
  run(): void {
    this.lead();
    this.o.log.info(
      { cluster: this.self.name, id: this.self.id, federationPort: this.fedPort },
      "federation started",
    );
  }

  /**
   * Starts what only the control-plane leader runs (server/controllers.ts): the publisher
   * (its cluster record carries the leader's addresses, so two replicas publishing would
   * rewrite it back and forth), the links pulling from peers and the hand-off loop. The
   * ASS listener serves peers' pulls on every replica.
   */
  lead(): void {
    if (this.closed) return;
    this.publishLoop.start();
    this.refreshLoop.start();
    this.acp?.start();
  }

  /** Stops the leader's part (lead()); the next leader resumes hand-offs from their durable state. */
  async unlead(): Promise<void> {
    await this.acp?.stop();
    await this.refreshLoop.stop();
    await this.publishLoop.stop();
    for (const c of this.acpClients.values()) c.close();
    this.acpClients.clear();
    await Promise.all([...this.links.values()].map((l) => l.stop()));
    this.links.clear();
  }

  /** The ASS listener's port. */
  get port(): number {
    return this.fedPort;
  }

  private summary() {
    return {
      name: this.self.name,
      apiUrl: this.o.apiUrl(),
      federation: `${this.o.advertiseHost.includes(":") ? `[${this.o.advertiseHost}]` : this.o.advertiseHost}:${this.fedPort}`,
      protocol: FEDERATION_PROTOCOL,
      softwareVersion: VERSION,
    };
  }

  /** Publishes what changed now, without waiting for the loop's next pass (tests, benches). */
  async publishNow(): Promise<void> {
    this.publishLoop.wake();
    await this.publishLoop.current;
  }

  /** Who we accept records from: us and every active peer, with their keys. */
  private async roster(): Promise<Roster> {
    const peers = await listPeers(this.o.store.read);
    const keys = new Map<string, KeyObject>([[this.self.id, this.keyOf(this.self.id, this.self.publicKey)]]);
    const quarantined = new Set<string>();
    const direct = new Set<string>();
    // In contact: its own link answered within two heartbeats (a waiting pull answers at least once per heartbeat).
    const freshMs = 2 * (this.o.heartbeatMs ?? 5000) + 1000;
    for (const p of peers) {
      if (p.state === "active") keys.set(p.id, this.keyOf(p.id, p.signingPublicKey));
      if (p.state === "quarantined") quarantined.add(p.id);
      if (p.state === "active" && p.contactAgeMs !== null && p.contactAgeMs <= freshMs) direct.add(p.id);
    }
    return { self: this.self.id, keys, quarantined, direct };
  }

  private keyOf(id: string, raw: string): KeyObject {
    let k = this.keys.get(`${id}/${raw}`);
    if (!k) {
      k = publicKeyFromRaw(raw);
      this.keys.set(`${id}/${raw}`, k);
    }
    return k;
  }

  /** Brings links and the listener's trust in line with the peers table. */
  private async refresh(): Promise<void> {
    if (this.closed) return;
    const peers = await listPeers(this.o.store.read);
    const live = peers.filter((p) => p.state !== "removed");
    this.listener.setPeerCas(live.map((p) => p.caPem));
    for (const p of peers) {
      const link = this.links.get(p.id);
      if (p.state === "active" && !link) {
        this.links.set(p.id, this.newLink(p));
      } else if (p.state !== "active" && link) {
        this.links.delete(p.id);
        await link.stop();
        if (p.state === "removed") this.listener.dropPeer(p.id);
      }
      if (p.state !== "active") {
        this.acpClients.get(p.id)?.close();
        this.acpClients.delete(p.id);
      }
    }
  }

  private newLink(p: PeerRow): PeerLink {
    return new PeerLink(p, {
      store: this.o.store,
      self: this.self,
      selfAddress: () => this.summary().federation,
      tls: { certChainPem: this.o.pki.certChainPem, keyPem: this.o.pki.keyPem },
      roster: () => this.roster(),
      changes: this.changes,
      log: this.o.log.child({ peer: p.name }),
      heartbeatMs: this.o.heartbeatMs ?? 5000,
      onBatch: (_peer, outcome, bytes) => {
        const m = this.metrics;
        if (!m) return;
        m.bytes.inc({ direction: "received" }, bytes);
        m.records.inc({ outcome: "accepted" }, outcome.accepted);
        m.records.inc({ outcome: "duplicate" }, outcome.duplicates);
        m.records.inc({ outcome: "stale" }, outcome.stale);
        m.records.inc({ outcome: "ignored" }, outcome.ignored);
        m.records.inc({ outcome: "too_large" }, outcome.tooLarge);
        m.records.inc({ outcome: "conflict" }, outcome.conflicts);
      },
      onViolation: (v) => {
        this.metrics?.violations.inc({ kind: v.kind });
        this.o.log.warn(
          { culprit: v.culprit, kind: v.kind, detail: v.detail },
          "federation peer quarantined",
        );
        this.refreshLoop.wake();
      },
    });
  }

  /** The ACP request client of a peer (one session, dialed on first use). */
  acpClient(peerId: string): AcpClient {
    let c = this.acpClients.get(peerId);
    if (!c) {
      c = new AcpClient(
        async () => {
          const p = await getPeerById(this.o.store.read, peerId);
          return p?.state === "active" ? p : undefined;
        },
        {
          self: this.self,
          selfAddress: () => this.summary().federation,
          tls: { certChainPem: this.o.pki.certChainPem, keyPem: this.o.pki.keyPem },
        },
        this.acpMetrics,
      );
      this.acpClients.set(peerId, c);
    }
    return c;
  }

  // ---- peering ---------------------------------------------------------------------------

  /** This cluster's card, as peers pin it. */
  card(): ClusterCard {
    return {
      id: this.self.id,
      name: this.self.name,
      protocol: FEDERATION_PROTOCOL,
      apiUrl: this.o.apiUrl(),
      federation: { host: this.o.advertiseHost, port: this.fedPort },
      caPem: this.o.pki.caPem,
      signingPublicKey: this.self.publicKey,
    };
  }

  /** Makes a one-time peering token. */
  async createToken(createdBy: string, ttlSeconds: number): Promise<{ token: string; expiresAt: string }> {
    const secret = randomBytes(32).toString("base64url");
    const { expiresAt } = await createPeeringToken(this.o.store.db, secret, ttlSeconds, createdBy);
    return {
      token: formatPeeringToken({ secret, caFingerprint: this.o.pki.caFingerprint, apiUrl: this.o.apiUrl() }),
      expiresAt,
    };
  }

  /**
   * Another cluster redeems one of our tokens: it presents its card and, as its TLS client
   * certificate, a server certificate from the CA on that card. Checks everything first,
   * then uses the token and adds the peer in one transaction: a refusal changes nothing.
   */
  async redeem(req: RedeemRequest, clientCertPem: string | undefined): Promise<RedeemResponse> {
    const c = req.cluster;
    if (c.protocol !== FEDERATION_PROTOCOL) {
      throw new NovaError(
        "NOVA_FED_PROTOCOL",
        `Cluster ${c.name} speaks federation protocol ${c.protocol}, ${this.self.name} speaks ${FEDERATION_PROTOCOL}; upgrade the older one.`,
        { details: { peer: c.protocol, ours: FEDERATION_PROTOCOL } },
      );
    }
    if (c.id === this.self.id) {
      throw new NovaError(
        "NOVA_FED_PEER_EXISTS",
        "This token belongs to this very cluster: a cluster cannot peer with itself.",
      );
    }
    publicKeyFromRaw(c.signingPublicKey);
    if (
      !clientCertPem ||
      !safeVerify(clientCertPem, c.caPem) ||
      peerIdentityError(certSan(clientCertPem), { role: "server" })
    ) {
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        "The redeeming cluster must present, as its TLS client certificate, its server certificate issued by the CA on its card.",
      );
    }
    await this.o.store.write(async (tx, emit) => {
      const tokenId = await checkPeeringToken(tx, req.secret);
      const already = (await listPeers(tx)).find((p) => p.id === c.id && p.state !== "removed");
      if (already) {
        throw new NovaError("NOVA_FED_PEER_EXISTS", `${this.self.name} and ${c.name} are already peers.`, {
          details: { peer: already.name, id: c.id },
        });
      }
      if (c.name === this.self.name || req.takenNames.includes(this.self.name)) {
        throw new NovaError(
          "NOVA_FED_NAME_CLASH",
          `The name ${c.name === this.self.name ? c.name : this.self.name} is used on both sides; clusters of a federation need different names. Rename one (novacron server --cluster-name NAME) and make a new token.`,
          { details: { ours: this.self.name, theirs: c.name } },
        );
      }
      await this.pin(tx, emit, c);
      await useToken(tx, tokenId, c.id);
    });
    this.refreshLoop.wake();
    return { cluster: this.card() };
  }

  /** Pins a cluster as an active peer (its CA and signing key) and records the event. */
  private async pin(tx: Queryable, emit: (e: ClusterEvent) => void, c: ClusterCard): Promise<PeerRow> {
    const row = await insertPeer(tx, this.peerFromCard(c));
    await this.event(tx, emit, "federation.peer.added", row.id, { name: row.name });
    return row;
  }

  /** Records a federation event about a peer, published after the commit. */
  private async event(
    tx: Queryable,
    emit: (e: ClusterEvent) => void,
    type: string,
    peerId: string,
    data: Record<string, unknown>,
  ): Promise<void> {
    emit(await appendEvent(tx, { type, resourceType: "peer", resourceId: peerId, data }));
  }

  private peerFromCard(c: ClusterCard): NewPeer {
    return {
      id: c.id,
      name: c.name,
      apiUrl: c.apiUrl,
      fedHost: c.federation.host,
      fedPort: c.federation.port,
      caPem: c.caPem,
      caFingerprint: fingerprintOf(c.caPem),
      signingPublicKey: c.signingPublicKey,
      protocol: c.protocol,
    };
  }

  /** Peers this cluster with the one that made `tokenText`. */
  async addPeer(tokenText: string): Promise<Peer> {
    const t = parsePeeringToken(tokenText);
    let caPem: string;
    try {
      caPem = await fetchPresentedCa(t.apiUrl, 10_000);
    } catch (err) {
      throw new NovaError(
        "NOVA_FED_PEER_UNREACHABLE",
        `Could not reach the cluster at ${t.apiUrl}: ${describeError(err)}`,
        {
          details: { url: t.apiUrl },
        },
      );
    }
    if (fingerprintOf(caPem) !== t.caFingerprint) {
      throw new NovaError(
        "NOVA_TLS_UNTRUSTED",
        `The server at ${t.apiUrl} presents CA ${fingerprintOf(caPem)}, but the token pins ${t.caFingerprint}: it is not the cluster that made the token.`,
        { details: { presented: fingerprintOf(caPem), pinned: t.caFingerprint } },
      );
    }
    const taken = [
      this.self.name,
      ...(await listPeers(this.o.store.read)).filter((p) => p.state !== "removed").map((p) => p.name),
    ];
    const fetch = clusterFetch(
      { caPem, certPem: this.o.pki.certChainPem, keyPem: this.o.pki.keyPem },
      { role: "server" },
    );
    let res: Response;
    try {
      res = await fetch(new URL("/v1/federation/redeem", t.apiUrl), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          secret: t.secret,
          cluster: this.card(),
          takenNames: taken,
        } satisfies RedeemRequest),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      throw new NovaError(
        "NOVA_FED_PEER_UNREACHABLE",
        `Could not reach the cluster at ${t.apiUrl}: ${describeError(err)}`,
        {
          details: { url: t.apiUrl },
        },
      );
    }
    const body = (await res.json().catch(() => null)) as {
      error?: { code?: string; message?: string; details?: Record<string, unknown> };
    } | null;
    if (!res.ok) {
      const code = body?.error?.code;
      throw new NovaError(
        (code?.startsWith("NOVA_") ? code : "NOVA_FED_PEER_UNREACHABLE") as "NOVA_FED_PROTOCOL",
        `The cluster at ${t.apiUrl} refused the peering: ${body?.error?.message ?? `HTTP ${res.status}`}`,
        { details: { url: t.apiUrl, ...(body?.error?.details ?? {}) } },
      );
    }
    if (!Value.Check(RedeemResponseSchema, body)) {
      throw new NovaError(
        "NOVA_FED_PROTOCOL",
        `The cluster at ${t.apiUrl} answered the peering with something else than a cluster card.`,
      );
    }
    const card = (body as RedeemResponse).cluster;
    if (fingerprintOf(card.caPem) !== t.caFingerprint) {
      throw new NovaError("NOVA_TLS_UNTRUSTED", "The peer's card names another CA than the token pins.");
    }
    // The other side checked our names; a clash can only come from a peer added here meanwhile.
    const peer = await this.o.store.write((tx, emit) => this.pin(tx, emit, card));
    await this.refresh();
    // Show the peer after its first exchange when that comes soon, so the answer says
    // whether the link works (a peer not reached yet is shown stale, with its last error).
    const shown = async () => (await this.listPeers()).find((p) => p.id === peer.id)!;
    await waitFor(
      async () => {
        const p = await shown();
        return p.lastContactAt !== null || p.lastError !== "";
      },
      { timeoutMs: 5000, intervalMs: 100, what: "the first exchange" },
    ).catch(() => {});
    return shown();
  }

  /** Removes a peer: no more exchange, its records dropped; says what it held. */
  async removePeer(nameOrId: string): Promise<PeerRemoved> {
    const before = await getLivePeer(this.o.store.read, nameOrId);
    const shown = (await this.listPeers()).find((p) => p.id === before.id)!;
    const counts = await this.o.store.write(async (tx, emit) => {
      // Counted in the transaction that deletes them: what it held is exactly what went.
      const held = (await recordCounts(tx)).get(before.id) ?? { hosts: 0, vms: 0, images: 0 };
      await transitionPeer(tx, before.id, before.state, "removed");
      await deleteRecordsOf(tx, before.id);
      await this.event(tx, emit, "federation.peer.removed", before.id, {
        name: before.name,
        hosts: held.hosts,
        vms: held.vms,
        images: held.images,
      });
      return held;
    });
    await this.refresh();
    return {
      peer: { ...shown, state: "removed" },
      held: { hosts: counts.hosts, vms: counts.vms, images: counts.images },
    };
  }

  /** Lifts a quarantine (an admin's explicit decision); the evidence stays. */
  async liftQuarantine(nameOrId: string): Promise<Peer> {
    const peer = await getLivePeer(this.o.store.read, nameOrId);
    if (peer.state !== "quarantined") {
      throw new NovaError("NOVA_ILLEGAL_STATE", `Peer ${peer.name} is ${peer.state}, not quarantined.`, {
        details: { peer: peer.name, state: peer.state },
      });
    }
    await this.o.store.write(async (tx, emit) => {
      await transitionPeer(tx, peer.id, "quarantined", "active");
      await this.event(tx, emit, "federation.peer.unquarantined", peer.id, { name: peer.name });
    });
    await this.refresh();
    return (await this.listPeers()).find((p) => p.id === peer.id)!;
  }

  // ---- views -----------------------------------------------------------------------------

  private isStale(contactAgeMs: number | null): boolean {
    return contactAgeMs === null || contactAgeMs > this.staleAfterMs;
  }

  /** Live peers as the API shows them. */
  async listPeers(): Promise<Peer[]> {
    const peers = (await listPeers(this.o.store.read)).filter((p) => p.state !== "removed");
    const vector = await readVector(this.o.store.read);
    const evidence = await evidenceCounts(this.o.store.read);
    return peers.map((p) => ({
      id: p.id,
      name: p.name,
      state: p.state,
      apiUrl: p.apiUrl,
      federation: `${p.fedHost}:${p.fedPort}`,
      caFingerprint: p.caFingerprint,
      signingKeyFingerprint: signingKeyFingerprint(p.signingPublicKey),
      protocol: p.protocol,
      addedAt: p.addedAt,
      lastContactAt: p.lastContactAt,
      lastContactAgeSeconds: p.contactAgeMs === null ? null : Math.round(p.contactAgeMs / 100) / 10,
      lastError: p.lastError,
      lagRecords: Math.max(0, p.peerSeq - (vector[p.id] ?? 0)),
      stale: this.isStale(p.contactAgeMs),
      quarantine:
        p.state === "quarantined"
          ? {
              kind: p.quarantineKind ?? "",
              reason: p.quarantineReason,
              at: p.quarantinedAt ?? p.addedAt,
              evidence: evidence.get(p.id) ?? 0,
            }
          : null,
    }));
  }

  /** This cluster and its peers. */
  async clusters(): Promise<FederatedCluster[]> {
    const counts = await recordCounts(this.o.store.read);
    const zero = { hosts: 0, vms: 0, images: 0, version: 0 };
    const own = counts.get(this.self.id) ?? zero;
    const out: FederatedCluster[] = [
      {
        id: this.self.id,
        name: this.self.name,
        self: true,
        state: "self",
        lastContactAt: null,
        lastContactAgeSeconds: null,
        lagRecords: 0,
        stale: false,
        version: own.version,
        hosts: own.hosts,
        vms: own.vms,
      },
    ];
    for (const p of await this.listPeers()) {
      const c = counts.get(p.id) ?? zero;
      out.push({
        id: p.id,
        name: p.name,
        self: false,
        state: p.state,
        lastContactAt: p.lastContactAt,
        lastContactAgeSeconds: p.lastContactAgeSeconds,
        lagRecords: p.lagRecords,
        stale: p.stale || p.state !== "active",
        version: c.version,
        hosts: c.hosts,
        vms: c.vms,
      });
    }
    return out;
  }

  /** Every VM of the federation, with its cluster; a stale or quarantined cluster's VMs say so. */
  async vms(): Promise<FederatedVm[]> {
    const clusters = new Map((await this.clusters()).map((c) => [c.id, c]));
    // One VM per id: during a hand-off the new owner's record may arrive before the old
    // owner's tombstone; the higher epoch is the current owner (§10).
    const byId = new Map<string, FederatedVm>();
    for (const r of await liveRecords(this.o.store.read, "vm")) {
      const c = clusters.get(r.origin);
      if (!c) continue;
      const b = (r.body ?? {}) as Record<string, unknown>;
      const vm: FederatedVm = {
        id: r.id,
        name: String(b.name ?? ""),
        cluster: { id: c.id, name: c.name },
        state: String(b.state ?? "unknown"),
        host: typeof b.host === "string" ? b.host : null,
        vcpus: Number(b.vcpus ?? 0),
        memoryMiB: Number(b.memoryMiB ?? 0),
        image: String(b.image ?? ""),
        version: r.version,
        epoch: recordEpoch(r) ?? 1,
        stale: c.stale,
      };
      const seen = byId.get(vm.id);
      if (!seen || vm.epoch > seen.epoch) byId.set(vm.id, vm);
    }
    return [...byId.values()].sort((a, b) =>
      a.cluster.name === b.cluster.name
        ? a.name.localeCompare(b.name)
        : a.cluster.name.localeCompare(b.cluster.name),
    );
  }

  /** The newest hand-offs of both sides, with what each waits for (docs/federation.md §10). */
  async handoffs(limit = 100): Promise<Handoff[]> {
    const names = new Map((await listPeers(this.o.store.read)).map((p) => [p.id, p.name]));
    const { outgoing, incoming } = await listRecentHandoffs(this.o.store.read, limit);
    const common = (h: OutgoingHandoff | IncomingHandoff, peer: string) => ({
      id: h.id,
      vm: h.vmName,
      vmId: h.vmId,
      peer: { id: peer, name: names.get(peer) ?? null },
      reason: h.reason,
      fromEpoch: h.fromEpoch,
      needsDecision: this.acp?.needsDecision(h.id) ?? null,
      settled: h.settledAt !== null,
      createdAt: h.createdAt,
      stateChangedAt: h.stateChangedAt,
    });
    return [
      ...outgoing.map((h) => ({
        ...common(h, h.targetClusterId),
        side: "source" as const,
        state: h.state,
        migrationId: h.migrationId,
      })),
      ...incoming.map((h) => ({
        ...common(h, h.sourceClusterId),
        side: "destination" as const,
        state: h.state,
        migrationId: null,
      })),
    ].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Stored evidence, for one peer or all. */
  async evidence(nameOrId?: string) {
    const peerId = nameOrId ? (await getLivePeer(this.o.store.read, nameOrId)).id : undefined;
    return listEvidence(this.o.store.read, peerId);
  }

  private async collect(m: FederationMetrics): Promise<void> {
    const peers = await this.listPeers();
    const ages = new Map((await listPeers(this.o.store.read)).map((p) => [p.id, p.contactAgeMs]));
    m.peers.reset();
    m.lag.reset();
    m.contactAge.reset();
    for (const s of ["active", "quarantined"] as const)
      m.peers.set({ state: s }, peers.filter((p) => p.state === s).length);
    for (const p of peers) {
      m.lag.set({ peer: p.name }, p.lagRecords);
      m.contactAge.set(
        { peer: p.name },
        (ages.get(p.id) ?? null) === null ? -1 : (ages.get(p.id) as number) / 1000,
      );
    }
  }

  /** Stops links, loops and the listener. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    await this.acp?.stop();
    for (const c of this.acpClients.values()) c.close();
    this.acpClients.clear();
    await this.refreshLoop.stop();
    await this.publishLoop.stop();
    await Promise.all([...this.links.values()].map((l) => l.stop()));
    this.links.clear();
    await this.listener.close();
  }
}

function safeVerify(certPem: string, caPem: string): boolean {
  try {
    return verifyIssued(certPem, caPem);
  } catch {
    return false;
  }
}

function certSan(pem: string): { subjectaltname: string } {
  return { subjectaltname: new X509Certificate(pem).subjectAltName ?? "" };
}
