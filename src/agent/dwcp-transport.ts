/**
 * The agent's DWCP transport for migrations (docs/migration.md, "Over DWCP"): the agent's
 * DWCP listener on its data address, and the parts it wires together, in src/agent/dwcp/:
 * - control.ts: the hello/go/inv exchange that opens a session, typed and validated;
 * - transport-choice.ts: what "auto" picks, and why (pure);
 * - page-store.ts: the host's page cache, its inventory and the per-VM page histories;
 * - target.ts: the destination side (sessions feeding the destination QEMU);
 * - source.ts: the source side (dial, measure, choose, and the local relay endpoints).
 *
 * Memory pages and disk blocks go through HDE against the same page cache on the
 * destination: its inventory crosses once per session (channel "inv") into a mirror that
 * the memory relay and every NBD connection share (receiver-mirror.ts).
 *
 * A session proves which migration it serves with a token the destination made when it
 * prepared the incoming VM; the server hands it to the source with the endpoints, so only
 * the control plane can point a source at a destination QEMU.
 *
 * Every DWCP connection runs mutual TLS 1.3 with the cluster's certificates (`tls`): the
 * listener requires a client certificate chaining to the cluster CA, the source verifies
 * the destination's chain (and its name when `serverName` gives one). Plaintext only with
 * `plaintext: true`, which logs a loud warning; neither is a configuration error.
 *
 * Across clusters (dwcp/peer-trust.ts): a migration prepared with another cluster's CA
 * adds that CA to the listener's trust list while it is prepared, and only its own
 * session may present a host certificate of it; the source, given the destination
 * cluster's CA with the endpoint, trusts only that CA for the session.
 *
 * Images across clusters: the listener also serves image offers (dwcp/image-offer.ts), a
 * peer CA trusted for each offer's sessions alone, and the agent pulls offered images
 * from another cluster's listener (dwcp/image-pull.ts), trusting only that cluster's CA.
 */
import { X509Certificate } from "node:crypto";
import path from "node:path";
import type { ConnectionOptions, PeerCertificate, TLSSocket } from "node:tls";
import type { Logger } from "pino";
import type { ImageStore } from "../compute/images/image-store.js";
import type { Channel } from "../dwcp/amst/channel.js";
import { dialSession } from "../dwcp/amst/dial.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import type { DwcpMetrics } from "../dwcp/metrics.js";
import { PathMemory } from "../dwcp/pba/path-memory.js";
import { NovaError } from "../lib/errors.js";
import { KeyedSpans } from "../lib/tracing.js";
import type { ChannelRouter } from "../migration/dwcp/channel-router.js";
import type { LocalEndpoint } from "../migration/dwcp/socket-io.js";
import { type DwcpEndpoint, encodeHelloAnswer, OFFER_HELLO_PREFIX } from "./dwcp/control.js";
import { ImageOffers, type OfferedBlob } from "./dwcp/image-offer.js";
import { ImagePulls, type PullRequest, type PullStatus } from "./dwcp/image-pull.js";
import { DwcpPageStore } from "./dwcp/page-store.js";
import { judgeSessionCert, PeerCaTrust, parsePeerCa } from "./dwcp/peer-trust.js";
import { DwcpSource, type OutgoingDwcp, type OutgoingStats } from "./dwcp/source.js";
import { DwcpTarget, type IncomingRelayMark, type NbdTarget, refuse } from "./dwcp/target.js";
import type { TransportDecision } from "./dwcp/transport-choice.js";

export type { DwcpEndpoint } from "./dwcp/control.js";
export type { OutgoingDwcp, OutgoingStats } from "./dwcp/source.js";
export type { TransportDecision } from "./dwcp/transport-choice.js";

/** The host's certificate material for DWCP (PEM), issued by the cluster CA. */
export interface AgentDwcpTls {
  /** The cluster CA: peers' certificates must chain to it, both ways. */
  ca: string;
  /** This host's certificate (presented as server and as client). */
  cert: string;
  key: string;
  /**
   * The name the destination's certificate must carry, per endpoint; undefined (or no
   * function) checks only that the chain leads to `ca`.
   */
  serverName?: (to: { host: string; port: number; name?: string }) => string | undefined;
  /**
   * Checks the destination's certificate when no name is checked (after the chain was
   * verified against `ca`): an Error refuses it. The agent requires a cluster host.
   */
  checkPeer?: (cert: PeerCertificate) => Error | undefined;
}

/** Logged (warn) when DWCP runs without TLS. */
export const DWCP_PLAINTEXT_WARNING = "DWCP plaintext: VM memory and disks cross the network unencrypted";

/** Options of the agent's DWCP transport. */
export interface AgentDwcpOptions {
  dataDir: string;
  /** This host's cluster name, announced in incoming endpoints so the source can check it. */
  hostName?: string;
  /** The data address to listen on. */
  host: string;
  /** @defaultValue 0 (kernel-chosen; the port travels in the incoming endpoints) */
  port?: number;
  /** Size cap of the host's page cache. @defaultValue 4 GiB */
  cacheBytes?: number;
  log: Logger;
  /** Mutual TLS for every DWCP connection. Exactly one of `tls` and `plaintext`. */
  tls?: AgentDwcpTls;
  /** Explicit opt-in to plaintext DWCP; logs DWCP_PLAINTEXT_WARNING. */
  plaintext?: boolean;
  /** The host's image store, for offering and pulling images across clusters. */
  images?: ImageStore;
  /** Where pulled blobs land before they are verified. @defaultValue `<dataDir>/tmp` */
  tmpDir?: string;
  /** Called when a pull added a blob to the store (the next heartbeat reports it). */
  onImagesChanged?: () => void;
  /** The agent's DWCP metrics (agent-metrics.ts), fed by the migrations it sends. */
  metrics?: DwcpMetrics;
  /** Told of each image blob pulled from another cluster (ImagePullsDeps.onBlobPulled). */
  onImageBlobPulled?: (bytes: { logicalBytes: number; wireBytes: number }) => void;
}

/**
 * TLS client options towards a destination: our certificate, the CA it must chain to (its
 * cluster's when the endpoint names one: a migration to another cluster; else ours), its
 * name if known.
 */
function clientTls(tls: AgentDwcpTls, to: DwcpEndpoint): ConnectionOptions {
  const name = tls.serverName?.(to);
  return {
    ca: to.caPem ?? tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: true,
    // The chain is always verified against the CA; the host name only when known.
    ...(name
      ? { servername: name }
      : { checkServerIdentity: (_host: string, cert: PeerCertificate) => tls.checkPeer?.(cert) }),
  };
}

/** One per agent. */
export class AgentDwcp {
  private readonly pages: DwcpPageStore;
  private readonly target: DwcpTarget;
  private readonly source: DwcpSource;
  private tls: AgentDwcpTls | undefined;
  /** Other clusters' CAs trusted for the incoming migrations prepared with them. */
  private readonly peerCas = new PeerCaTrust();
  private readonly offers: ImageOffers | null;
  private readonly pulls: ImagePulls | null;
  /** Each migration's session as a span of its trace (lib/tracing.ts). */
  private readonly spans = new KeyedSpans();

  private constructor(
    private readonly o: AgentDwcpOptions,
    private readonly listener: DwcpListener,
  ) {
    this.pages = new DwcpPageStore(o.dataDir, o.cacheBytes, o.log);
    this.target = new DwcpTarget(
      this.pages,
      () => this.endpoint,
      (session, peerCaPem) => this.authorize(session, peerCaPem),
      (id, token, session, router, hello) => this.serveOffer(id, token, session, router, hello),
    );
    this.tls = o.tls;
    this.offers = o.images ? new ImageOffers(o.images) : null;
    this.pulls = o.images
      ? new ImagePulls({
          images: o.images,
          cache: () => this.pages.current,
          dial: (to, peerCaPem) => this.dialPeer(to, peerCaPem),
          tmpDir: o.tmpDir ?? path.join(o.dataDir, "tmp"),
          onImagesChanged: o.onImagesChanged ?? (() => {}),
          ...(o.onImageBlobPulled ? { onBlobPulled: o.onImageBlobPulled } : {}),
        })
      : null;
    const paths = new PathMemory(path.join(o.dataDir, "dwcp", "paths.json"));
    if (paths.loadError)
      o.log.warn({ err: paths.loadError }, "DWCP path memory ignored; paths are measured afresh");
    this.source = new DwcpSource(
      this.pages,
      (to) => (this.tls ? clientTls(this.tls, to) : null),
      paths,
      o.metrics,
    );
    void this.acceptLoop();
  }

  /**
   * Starts listening on the data address. Throws NOVA_CONFIG unless exactly one of `tls`
   * and `plaintext: true` is given.
   */
  static async start(o: AgentDwcpOptions): Promise<AgentDwcp> {
    if (o.tls && o.plaintext) {
      throw new NovaError("NOVA_CONFIG", "DWCP: give either TLS material or the plaintext opt-in, not both");
    }
    if (!o.tls && o.plaintext !== true) {
      throw new NovaError(
        "NOVA_CONFIG",
        "DWCP needs TLS material (the host's certificate, key and the cluster CA) or an explicit plaintext opt-in",
      );
    }
    if (!o.tls) o.log.warn({ dwcp: "plaintext" }, DWCP_PLAINTEXT_WARNING);
    const listener = await DwcpListener.listen({
      host: o.host,
      port: o.port ?? 0,
      ...(o.tls
        ? {
            tls: {
              ca: o.tls.ca,
              cert: o.tls.cert,
              key: o.tls.key,
              requestCert: true,
              rejectUnauthorized: true,
            },
          }
        : {}),
    });
    return new AgentDwcp(o, listener);
  }

  /** True when DWCP runs with mutual TLS (false: the plaintext opt-in). */
  get secure(): boolean {
    return this.tls !== undefined;
  }

  /**
   * New TLS material (the host's renewed certificate) for connections from now on, both
   * ways. Ignored when DWCP runs on the plaintext opt-in.
   */
  updateTls(tls: AgentDwcpTls): void {
    if (!this.tls) return;
    this.tls = tls;
    this.applyListenerTls();
  }

  /** The listener trusts the cluster CA and the peer CAs of the migrations prepared now. */
  private applyListenerTls(): void {
    const tls = this.tls;
    if (!tls) return;
    this.listener.updateTls({ ca: [tls.ca, ...this.peerCas.list()], cert: tls.cert, key: tls.key });
  }

  /** Why a session may not serve the migration it named (its client certificate), if so. */
  private authorize(session: DwcpSession, peerCaPem: string | undefined): string | undefined {
    const tls = this.tls;
    // The plaintext opt-in: the token alone (a peer CA is refused when preparing).
    if (!tls) return undefined;
    const peer = (session.connectionSockets()[0] as TLSSocket | undefined)?.getPeerCertificate?.();
    const cert = peer?.raw
      ? { pem: new X509Certificate(peer.raw).toString(), subjectaltname: peer.subjectaltname }
      : null;
    const verdict = judgeSessionCert({ cert, ownCaPem: tls.ca, peerCaPem });
    return verdict.ok ? undefined : verdict.reason;
  }

  /** The listener's address. */
  get endpoint(): { host: string; port: number; name?: string } {
    return {
      host: this.o.host,
      port: this.listener.port,
      ...(this.o.hostName ? { name: this.o.hostName } : {}),
    };
  }

  // ------------------------------------------------------------------ destination ---

  /**
   * Destination: accept a session for `migrationId` that feeds these local endpoints. With
   * `peerCaPem` (a migration from another cluster) the listener trusts that CA until the
   * migration is forgotten, for this migration's session only, and the endpoint names this
   * cluster's CA for the source to verify us against. Refused without TLS
   * (NOVA_UNPROCESSABLE), with a malformed CA (NOVA_BAD_REQUEST) and beyond MAX_PEER_CAS
   * distinct CAs (NOVA_NO_CAPACITY).
   */
  expectIncoming(
    migrationId: string,
    vmId: string,
    qemu: LocalEndpoint,
    nbd: NbdTarget,
    peerCaPem?: string,
  ): DwcpEndpoint {
    this.spans.open(migrationId, "dwcp session (destination)", {
      "novacron.migration.id": migrationId,
      "novacron.migration.cross_cluster": peerCaPem !== undefined,
    });
    if (peerCaPem === undefined) return this.target.expect(migrationId, vmId, qemu, nbd);
    const tls = this.tls;
    if (!tls)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "A migration from another cluster needs DWCP with TLS, and this agent runs DWCP in plaintext (its opt-in)",
      );
    const ca = parsePeerCa(peerCaPem);
    this.peerCas.add(migrationId, ca);
    this.applyListenerTls();
    return { ...this.target.expect(migrationId, vmId, qemu, nbd, ca), caPem: tls.ca };
  }

  /**
   * Destination, before resuming the VM: the relayed stream must have been written in full
   * and verified, and no disk-mirror relay may have failed. Resolves at once for non-DWCP
   * migrations.
   */
  incomingVerified(migrationId: string, timeoutMs?: number): Promise<void> {
    return this.target.verified(migrationId, timeoutMs);
  }

  /** Destination: where each incoming relay's course is recorded (DwcpTarget.onRelayMark). */
  onIncomingRelayMark(mark: IncomingRelayMark): void {
    this.target.onRelayMark(mark);
  }

  /** Destination: whether this agent runs a relay for `migrationId` (it does not after a restart). */
  hasIncomingRelay(migrationId: string): boolean {
    return this.target.hasRelay(migrationId);
  }

  /** Destination: why the relay of `migrationId` failed for good, if it did (DwcpTarget.failure). */
  incomingFailure(migrationId: string): string | undefined {
    return this.target.failure(migrationId);
  }

  /** Destination: the migration ended (either way); drop its session. */
  forgetIncoming(migrationId: string): void {
    this.target.forget(migrationId);
    this.spans.close(migrationId, "dwcp session (destination)", {
      "novacron.dwcp.relay_failure": this.target.failure(migrationId),
    });
    if (this.peerCas.remove(migrationId)) this.applyListenerTls();
  }

  // ------------------------------------------------------------------ image copy ---

  /** The TLS material a copy of images across clusters needs; NOVA_UNPROCESSABLE on the plaintext opt-in. */
  private crossClusterTls(): AgentDwcpTls {
    if (!this.tls)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "Copying an image to or from another cluster needs DWCP with TLS, and this agent runs DWCP in plaintext (its opt-in)",
      );
    return this.tls;
  }

  private imageParts(): { offers: ImageOffers; pulls: ImagePulls } {
    if (!this.offers || !this.pulls)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "This agent's DWCP transport was started without an image store",
      );
    return { offers: this.offers, pulls: this.pulls };
  }

  /**
   * Source of an image copy: offers `digests` under `id` to the hosts of `peerCaPem`'s
   * cluster (trusted by the listener for that offer's sessions only) until `ttlMs` passed
   * or it is withdrawn. Idempotent.
   */
  async offerImage(
    id: string,
    digests: readonly string[],
    peerCaPem: string,
    ttlMs: number,
  ): Promise<{
    endpoint: { host: string; port: number; name?: string };
    token: string;
    blobs: OfferedBlob[];
  }> {
    this.crossClusterTls();
    const ca = parsePeerCa(peerCaPem);
    this.dropExpiredOffers();
    const offer = await this.imageParts().offers.offer(id, digests, ca, ttlMs);
    try {
      this.peerCas.add(`${OFFER_HELLO_PREFIX}${id}`, ca);
    } catch (err) {
      this.imageParts().offers.withdraw(id);
      throw err;
    }
    this.applyListenerTls();
    return { endpoint: this.endpoint, ...offer };
  }

  /** Ends offer `id` (idempotent); its CA is no longer trusted for it. */
  withdrawImageOffer(id: string): boolean {
    const had = this.imageParts().offers.withdraw(id);
    if (this.peerCas.remove(`${OFFER_HELLO_PREFIX}${id}`)) this.applyListenerTls();
    return had;
  }

  private dropExpiredOffers(): void {
    for (const id of this.offers?.expire() ?? [])
      if (this.peerCas.remove(`${OFFER_HELLO_PREFIX}${id}`)) this.applyListenerTls();
  }

  /** Destination of an image copy: starts (or reports) the pull of an offer. */
  pullImage(req: PullRequest): PullStatus {
    this.crossClusterTls();
    parsePeerCa(req.peerCaPem);
    return this.imageParts().pulls.start(req);
  }

  /** The pulls, for tests that wait for one to end. */
  get imagePulls(): ImagePulls | null {
    return this.pulls;
  }

  /** Dials another agent's listener trusting only `peerCaPem` (another cluster's CA). */
  private dialPeer(to: { host: string; port: number; name?: string }, peerCaPem: string) {
    const tls = clientTls(this.crossClusterTls(), { ...to, token: "", caPem: peerCaPem });
    return dialSession({ host: to.host, port: to.port, streams: 1, tls });
  }

  /** A session whose hello named an image offer: its token and certificate must fit the offer. */
  private async serveOffer(
    id: string,
    token: Buffer,
    session: DwcpSession,
    router: ChannelRouter,
    hello: Channel,
  ): Promise<void> {
    this.dropExpiredOffers();
    const offer = this.offers?.check(id, token);
    if (!offer) {
      await refuse(hello, "unknown offer or bad token");
      throw new NovaError("NOVA_FORBIDDEN", `DWCP session for unknown image offer ${id}`);
    }
    const denied = this.authorize(session, offer.peerCaPem);
    if (denied) {
      await refuse(hello, "the client certificate is not accepted for this offer");
      throw new NovaError("NOVA_FORBIDDEN", `DWCP session for image offer ${id} refused: ${denied}`);
    }
    await hello.send(encodeHelloAnswer({ ok: true }));
    await hello.end();
    await this.imageParts().offers.serve(id, session, router);
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let session: DwcpSession;
      try {
        session = await this.listener.accept();
      } catch {
        return; // the listener closed
      }
      void this.target.serve(session).catch((err: unknown) => {
        this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, "DWCP session refused");
        session.destroy();
      });
    }
  }

  // ----------------------------------------------------------------------- source ---

  /** Source: connects to the destination for `migrationId` and decides the transport. */
  startOutgoing(
    migrationId: string,
    vmId: string,
    to: DwcpEndpoint,
    requested: "auto" | "dwcp",
  ): Promise<TransportDecision> {
    this.spans.open(migrationId, "dwcp session (source)", {
      "novacron.migration.id": migrationId,
      "server.address": to.name ?? to.host,
    });
    return this.source.start(migrationId, vmId, to, requested);
  }

  /** Source: the DWCP side of a migration, if it runs over DWCP. */
  outgoingOf(migrationId: string): OutgoingDwcp | undefined {
    return this.source.of(migrationId);
  }

  /** Source: the migration ended (either way). */
  finishOutgoing(migrationId: string): void {
    const stats = this.source.of(migrationId)?.stats();
    this.source.finish(migrationId);
    this.spans.close(migrationId, "dwcp session (source)", stats ? outgoingSpanAttributes(stats) : {});
  }

  /** Stops listening and ends every session. */
  async close(): Promise<void> {
    this.spans.closeAll();
    this.source.finishAll();
    this.target.forgetAll();
    await this.listener.close();
    this.pages.close();
  }
}

/** What a source's session carried, for its span. */
function outgoingSpanAttributes(s: OutgoingStats): Record<string, string | number> {
  return {
    "novacron.dwcp.streams": s.streams,
    ...(s.mode ? { "novacron.dwcp.mode": s.mode } : {}),
    "novacron.dwcp.memory.logical_bytes": s.logicalBytes,
    "novacron.dwcp.memory.wire_bytes": s.wireBytes,
    "novacron.dwcp.disk.logical_bytes": s.disk.logicalBytes,
    "novacron.dwcp.disk.wire_bytes": s.disk.wireBytes,
  };
}
