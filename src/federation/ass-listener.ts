/**
 * The ASS listener (docs/federation.md §4): a DWCP listener with mutual TLS that only
 * peers pass. TLS trusts this cluster's CA and the CA each peer pinned at peering; the
 * session's client certificate must be a server certificate issued by a live peer's CA,
 * and the hello must name that peer, or the session is dropped before any record is read.
 * Each pull is answered with a batch; an empty answer waits (long-poll) for a change up
 * to the pull's waitMs, so a change travels in one round trip and an idle link carries
 * one small exchange per heartbeat.
 */
import type { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { AcpAnswer, AcpRequest } from "../api/types/acp.js";
import { type AssBatch, type AssRefusal, FEDERATION_PROTOCOL } from "../api/types/federation.js";
import {
  followPeerCard,
  type PeerRow,
  readClusterIdentity,
  readVector,
  recordsSince,
} from "../cluster/store/federation.js";
import type { Store } from "../cluster/store/store.js";
import type { Channel } from "../dwcp/amst/channel.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import { describeError, NovaError } from "../lib/errors.js";
import { withDeadline } from "../lib/wait.js";
import { verifyIssued } from "../security/pki.js";
import { peerIdentityError } from "../security/tls-client.js";
import { ACP_CHANNEL, readAcpRequest, sendAcp } from "./acp/acp-wire.js";
import {
  ASS_CHANNEL,
  BATCH_LIMITS,
  FEDERATION_SESSION_TUNING,
  readHello,
  readPull,
  send,
} from "./ass-wire.js";
import type { Changes } from "./changes.js";
import { parseFederationAddress } from "./receiver.js";
import { recordSize, type SignedRecord } from "./records.js";
import type { VersionVector } from "./version-vector.js";

/** How long a session may take to open its channel and say hello. */
const HELLO_DEADLINE_MS = 10_000;
const silent = (): Error => new NovaError("NOVA_FED_PROTOCOL", `no hello within ${HELLO_DEADLINE_MS} ms`);

/** Sessions one peer may hold open at once. */
const MAX_SESSIONS_PER_PEER = 4;

/** What the listener needs from the federation. */
export interface AssListenerDeps {
  store: Store;
  self: { id: string; name: string };
  /** Live peers (not removed), fresh from the store or a cache. */
  peers: () => Promise<PeerRow[]>;
  changes: Changes;
  log: Logger;
  /** Bytes served, for the traffic metric. */
  onBytes?: (bytes: number) => void;
  /** Answers ACP requests (docs/federation.md §10); without it the acp/1 channel is refused. */
  acp?: AcpHandler;
}

/** Answers one ACP request from an active peer; never throws (a failure is an error answer). */
export type AcpHandler = (peer: PeerRow, request: AcpRequest) => Promise<AcpAnswer>;

/** TLS material of this cluster's server. */
export interface ListenerTls {
  certChainPem: string;
  keyPem: string;
  ownCaPem: string;
  /** CAs of live peers. */
  peerCas: string[];
}

function pemOf(raw: Buffer): string {
  const b64 = raw.toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN CERTIFICATE-----\n${b64.trim()}\n-----END CERTIFICATE-----\n`;
}

/** Serves pulls from peers. */
export class AssListener {
  private readonly byPeer = new Map<string, Set<DwcpSession>>();
  private closed = false;
  private tlsMaterial: ListenerTls;

  private constructor(
    private readonly listener: DwcpListener,
    private readonly deps: AssListenerDeps,
    tls: ListenerTls,
  ) {
    this.tlsMaterial = tls;
    void this.acceptLoop();
  }

  /** Listens on host:port (0 = any port). */
  static async start(
    deps: AssListenerDeps,
    host: string,
    port: number,
    tls: ListenerTls,
  ): Promise<AssListener> {
    const listener = await DwcpListener.listen({
      host,
      port,
      tls: {
        cert: tls.certChainPem,
        key: tls.keyPem,
        // Never empty: an empty list would fall back to the system's roots.
        ca: [tls.ownCaPem, ...tls.peerCas],
        requestCert: true,
      },
      versions: [3],
      maxSessions: 64,
      maxPendingPerAddress: 8,
      // The session's message bound applies to what it sends as well: batches. What a peer
      // sends (pulls, hellos) is refused above MAX_PULL_BYTES when decoded.
      tuning: FEDERATION_SESSION_TUNING,
    });
    return new AssListener(listener, deps, tls);
  }

  /** The bound port. */
  get port(): number {
    return this.listener.port;
  }

  /** Trusts a new set of peer CAs (a peer was added or removed); a no-op when nothing changed. */
  setPeerCas(peerCas: string[]): void {
    if (peerCas.join("\n") === this.tlsMaterial.peerCas.join("\n")) return;
    this.tlsMaterial = { ...this.tlsMaterial, peerCas };
    this.listener.updateTls({
      ca: [this.tlsMaterial.ownCaPem, ...peerCas],
      cert: this.tlsMaterial.certChainPem,
      key: this.tlsMaterial.keyPem,
    });
  }

  /** Drops every session of a peer (removed or quarantined). */
  dropPeer(id: string): void {
    for (const s of this.byPeer.get(id) ?? [])
      s.destroy(new NovaError("NOVA_FED_PEER_UNKNOWN", "peer dropped"));
    this.byPeer.delete(id);
  }

  /** Stops listening and drops every session. */
  async close(): Promise<void> {
    this.closed = true;
    this.deps.changes.signal();
    for (const id of [...this.byPeer.keys()]) this.dropPeer(id);
    await this.listener.close();
  }

  private async acceptLoop(): Promise<void> {
    while (!this.closed) {
      let session: DwcpSession;
      try {
        session = await this.listener.accept();
      } catch {
        return;
      }
      void this.serveSession(session).catch((err) =>
        this.deps.log.warn({ err: describeError(err) }, "federation session ended"),
      );
    }
  }

  /**
   * The live peers this session's client certificate may belong to: those whose pinned CA
   * issued it (several when clusters share one CA; the hello then says which).
   */
  private async candidates(session: DwcpSession): Promise<PeerRow[]> {
    const socket = session.connectionSockets()[0] as TLSSocket | undefined;
    const cert = socket?.getPeerCertificate?.();
    if (!cert?.raw) throw new NovaError("NOVA_UNAUTHENTICATED", "no client certificate");
    const identityError = peerIdentityError(cert, { role: "server" });
    if (identityError) throw new NovaError("NOVA_UNAUTHENTICATED", identityError.message);
    const pem = pemOf(cert.raw);
    const peers = (await this.deps.peers()).filter((p) => verifyIssued(pem, p.caPem));
    if (peers.length === 0)
      throw new NovaError("NOVA_FED_PEER_UNKNOWN", "the client certificate is no peer's");
    return peers;
  }

  private async serveSession(session: DwcpSession): Promise<void> {
    let candidates: PeerRow[];
    let ch: Channel;
    let peer: PeerRow;
    try {
      candidates = await this.candidates(session);
      // One exchange at a time: a peer gets one channel, and says hello within the bound.
      const opened = await withDeadline(session.accept(), HELLO_DEADLINE_MS, silent);
      ch = opened;
      const hello = await withDeadline(readHello(opened), HELLO_DEADLINE_MS, silent);
      const named = candidates.find((p) => p.id === hello.cluster);
      if (!named) {
        await send(ch, {
          type: "error",
          code: "NOVA_UNAUTHENTICATED",
          message: "the hello names another cluster than the certificate",
        });
        throw new NovaError(
          "NOVA_UNAUTHENTICATED",
          `a peer's certificate, but a hello naming ${hello.cluster}`,
        );
      }
      peer = named;
      // The peer says where it listens now (its certificate vouches for it): follow a move.
      const moved = parseFederationAddress(hello.federation);
      if (moved.fedHost) await followPeerCard(this.deps.store.db, peer.id, moved);
    } catch (err) {
      session.destroy(err as Error);
      throw err;
    }
    const set = this.byPeer.get(peer.id) ?? new Set();
    if (set.size >= MAX_SESSIONS_PER_PEER) {
      // An honest peer holds one session to us (two while it replaces a broken one).
      session.destroy(new NovaError("NOVA_FED_PROTOCOL", "too many sessions from one peer"));
      throw new NovaError(
        "NOVA_FED_PROTOCOL",
        `${peer.name} opened more than ${MAX_SESSIONS_PER_PEER} sessions`,
      );
    }
    set.add(session);
    this.byPeer.set(peer.id, set);
    try {
      await this.serveChannel(ch, peer);
      await ch.end().catch(() => {});
    } finally {
      set.delete(session);
      session.destroy();
    }
  }

  private async serveChannel(ch: Channel, peer: PeerRow): Promise<void> {
    if (peer.state === "quarantined") {
      await send(ch, {
        type: "error",
        code: "NOVA_FED_QUARANTINED",
        message: `${this.deps.self.name} has quarantined ${peer.name}: ${peer.quarantineReason}`,
      });
      return;
    }
    if (ch.label !== ASS_CHANNEL && !(ch.label === ACP_CHANNEL && this.deps.acp)) {
      await send(ch, {
        type: "error",
        code: "NOVA_FED_PROTOCOL",
        message: `${this.deps.self.name} serves no channel ${JSON.stringify(ch.label.slice(0, 64))}`,
      });
      return;
    }
    await send(ch, {
      type: "hello",
      protocol: FEDERATION_PROTOCOL,
      cluster: this.deps.self.id,
      name: this.deps.self.name,
    });
    if (ch.label === ACP_CHANNEL && this.deps.acp) return this.serveAcp(ch, peer, this.deps.acp);
    for (;;) {
      const pull = await readPull(ch);
      if (pull === null) return;
      const answer = await this.answer(peer, pull.vector, pull.waitMs);
      await send(ch, answer);
      this.deps.onBytes?.(Buffer.byteLength(JSON.stringify(answer)));
      if (answer.type === "error") return;
    }
  }

  /**
   * ACP requests, one at a time: the peer's state is checked before each (a peer
   * quarantined or removed meanwhile gets the refusal), then the handler answers.
   */
  private async serveAcp(ch: Channel, peer: PeerRow, handler: AcpHandler): Promise<void> {
    for (;;) {
      const request = await readAcpRequest(ch);
      if (request === null) return;
      const refused = this.refusal(peer, await this.deps.peers());
      if (refused) {
        await send(ch, refused);
        return;
      }
      await sendAcp(ch, await handler(peer, request));
    }
  }

  /** A refusal when `peer` is no longer active here (checked before every answer). */
  private refusal(peer: PeerRow, peers: readonly PeerRow[]): AssRefusal | null {
    const now = peers.find((p) => p.id === peer.id);
    if (now?.state === "active") return null;
    return {
      type: "error",
      code: now ? "NOVA_FED_QUARANTINED" : "NOVA_FED_PEER_UNKNOWN",
      message: now
        ? `${this.deps.self.name} has quarantined ${peer.name}: ${now.quarantineReason}`
        : `${this.deps.self.name} no longer peers with ${peer.name}`,
    };
  }

  /**
   * The batch for a pull: records past `asked` for origins we may vouch for, waiting up to
   * `waitMs` for one; a refusal instead once `peer` is no longer active here.
   */
  private async answer(peer: PeerRow, asked: VersionVector, waitMs: number): Promise<AssBatch | AssRefusal> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (this.closed) throw new NovaError("NOVA_DWCP_CLOSED", "the federation listener is closing");
      const seen = this.deps.changes.current;
      const peers = await this.deps.peers();
      const refused = this.refusal(peer, peers);
      if (refused) return refused;
      const vouch = new Set([
        this.deps.self.id,
        ...peers.filter((p) => p.state === "active").map((p) => p.id),
      ]);
      const restricted: VersionVector = {};
      for (const [o, v] of Object.entries(asked)) if (vouch.has(o)) restricted[o] = v;
      const identity = await readClusterIdentity(this.deps.store.read);
      const held = await readVector(this.deps.store.read);
      const vector: VersionVector = {};
      for (const o of Object.keys(restricted))
        vector[o] = o === this.deps.self.id ? identity.seq : (held[o] ?? 0);
      const rows = (await recordsSince(
        this.deps.store.read,
        restricted,
        BATCH_LIMITS.records + 1,
      )) as SignedRecord[];
      let truncated = rows.length > BATCH_LIMITS.records;
      const records: SignedRecord[] = [];
      let bytes = 0;
      for (const r of rows.slice(0, BATCH_LIMITS.records)) {
        bytes += recordSize(r);
        if (bytes > BATCH_LIMITS.bytes && records.length > 0) {
          truncated = true;
          break;
        }
        records.push(r);
      }
      const left = deadline - Date.now();
      if (records.length > 0 || left <= 0) {
        return {
          type: "batch",
          vector,
          seq: identity.seq,
          records,
          truncated,
          now: new Date().toISOString(),
        };
      }
      await this.deps.changes.wait(seen, left);
    }
  }
}
