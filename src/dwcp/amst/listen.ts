/**
 * The listening side of DWCP (docs/dwcp.md §2): accepts connections, runs TLS when
 * configured, answers HELLOs (new session, authenticated JOIN of an existing one, or a
 * typed REJECT), and hands out new sessions through `accept()`.
 *
 * Everything before a WELCOME is unauthenticated (beyond TLS), so it is bounded
 * (docs/dwcp.md §2.3): connections not yet welcomed, in total and per remote address
 * (excess ones are destroyed before TLS or any read); one deadline per connection from
 * accept to WELCOME, whatever the peer sends or trickles; and the number of sessions.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import {
  createServer as createTlsServer,
  type TLSSocket,
  type TlsOptions,
  type Server as TlsServer,
} from "node:tls";
import { NovaError } from "../../lib/errors.js";
import { DEFAULT_MAX_PAYLOAD } from "../wire/decoder.js";
import {
  ALL_CAPABILITIES,
  chooseVersion,
  type DwcpVersion,
  decodeAuth,
  decodeHello,
  deriveSessionKeys,
  encodeChallenge,
  encodeReply,
  type Hello,
  newKeyShare,
  RejectReason,
  readHandshake,
  type SessionKeys,
  SUPPORTED_VERSIONS,
  verifyJoinProof,
  versionMask,
} from "../wire/handshake.js";
import { DwcpSession } from "./session.js";
import { DEFAULT_TUNING, type SessionTuning } from "./session-config.js";

/** Listener configuration. */
export interface ListenOptions {
  /** An existing listening server (e.g. created inside a network namespace); else one is created. */
  server?: Server;
  /** Address to bind when creating the server. @defaultValue "127.0.0.1" */
  host?: string;
  /** Port to bind when creating the server; 0 picks one. @defaultValue 0 */
  port?: number;
  /** TLS 1.3 server options (cert, key; ca + requestCert for client certificates). */
  tls?: TlsOptions;
  /** Versions accepted. @defaultValue [1, 3] */
  versions?: readonly DwcpVersion[];
  /** Capabilities granted for v3. @defaultValue all */
  capabilities?: number;
  /** Most connections one session may have. @defaultValue 32 */
  maxStreamsPerSession?: number;
  /**
   * Deadline per connection from accept to WELCOME (TLS, HELLO and a JOIN's proof
   * included); a peer that sends nothing or trickles is dropped at it. @defaultValue 10000
   */
  handshakeTimeoutMs?: number;
  /** Connections not yet welcomed, in total; more are destroyed at once. @defaultValue 256 */
  maxPendingConnections?: number;
  /** Connections not yet welcomed from one remote address; more are destroyed at once. @defaultValue 64 */
  maxPendingPerAddress?: number;
  /** Sessions open at once (accepted or waiting in `accept()`); more get REJECT 6. @defaultValue 64 */
  maxSessions?: number;
  /** Session tunables. */
  tuning?: Partial<SessionTuning>;
}

/** Defaults of the listener's bounds (ListenOptions). */
export const LISTEN_LIMITS = {
  handshakeTimeoutMs: 10_000,
  maxPendingConnections: 256,
  maxPendingPerAddress: 64,
  maxSessions: 64,
  maxStreamsPerSession: 32,
} as const;

/** A session the listener knows, with what a JOIN must prove. */
interface Known {
  session: DwcpSession;
  keys: SessionKeys;
  /** SHA-256 fingerprint of the first connection's client certificate (mutual TLS), if any. */
  peerCert: string | null;
}

/** A connection between accept and WELCOME. */
interface Pending {
  address: string;
  released: boolean;
  deadline: number;
  timer: NodeJS.Timeout;
}

/** Accepts DWCP sessions on a TCP (or TLS) server. */
export class DwcpListener {
  private readonly sessions = new Map<string, Known>();
  private readonly ready: DwcpSession[] = [];
  private waiter: { resolve: (s: DwcpSession) => void; reject: (e: Error) => void } | null = null;
  private readonly tuning: SessionTuning;
  private closedFlag = false;
  private readonly sockets = new Set<Socket>();
  private readonly pending = new WeakMap<Socket, Pending>();
  private pendingTotal = 0;
  private readonly pendingByAddress = new Map<string, number>();
  private refusedCount = 0;
  /** Runs TLS on accepted sockets (fed by hand, so `server` may come from anywhere). */
  private readonly tls: TlsServer | null;

  private constructor(
    readonly server: Server,
    private readonly options: ListenOptions,
  ) {
    this.tuning = { ...DEFAULT_TUNING, ...options.tuning };
    this.tls = options.tls
      ? createTlsServer({
          rejectUnauthorized: true,
          ...options.tls,
          minVersion: "TLSv1.3",
          handshakeTimeout: options.handshakeTimeoutMs ?? LISTEN_LIMITS.handshakeTimeoutMs,
        })
      : null;
    // A tls.Server given raw sockets does the whole server-side handshake, including the
    // client-certificate check that a bare TLSSocket would skip; failures just drop the socket.
    this.tls?.on("secureConnection", (s: Socket) => void this.onSecure(s));
    this.tls?.on("tlsClientError", (_err: Error, s: Socket) => s.destroy());
    server.on("connection", (s: Socket) => this.onConnection(s));
  }

  /**
   * Swaps in new TLS material (a renewed certificate) for connections accepted from now
   * on; a listener without TLS stays without.
   */
  updateTls(tls: Pick<TlsOptions, "ca" | "cert" | "key">): void {
    this.tls?.setSecureContext({ ...this.options.tls, ...tls, minVersion: "TLSv1.3" });
  }

  /** Starts listening (or adopts `options.server`). */
  static async listen(options: ListenOptions = {}): Promise<DwcpListener> {
    if (options.server) return new DwcpListener(options.server, options);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) =>
        reject(
          new NovaError("NOVA_DWCP_CONNECTION", `Failed to listen for DWCP: ${err.message}`, { cause: err }),
        ),
      );
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
    });
    return new DwcpListener(server, options);
  }

  /** The bound TCP port. */
  get port(): number {
    const a = this.server.address();
    return typeof a === "object" && a !== null ? a.port : 0;
  }

  /** Connections not yet welcomed (for tests and metrics). */
  get pendingConnections(): number {
    return this.pendingTotal;
  }

  /** Connections destroyed at accept because a pending-connection cap was reached. */
  get refusedConnections(): number {
    return this.refusedCount;
  }

  /** Sessions this listener holds open. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Resolves with the next new session. */
  accept(): Promise<DwcpSession> {
    const s = this.ready.shift();
    if (s) return Promise.resolve(s);
    if (this.closedFlag)
      return Promise.reject(new NovaError("NOVA_DWCP_CLOSED", "The DWCP listener is closed"));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Stops accepting and destroys sessions and handshakes in progress. */
  async close(): Promise<void> {
    this.closedFlag = true;
    this.waiter?.reject(new NovaError("NOVA_DWCP_CLOSED", "The DWCP listener is closed"));
    this.waiter = null;
    for (const k of this.sessions.values()) k.session.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(raw: Socket): void {
    if (this.closedFlag) {
      raw.destroy();
      return;
    }
    raw.on("error", () => undefined);
    const address = raw.remoteAddress ?? "?";
    const fromAddress = this.pendingByAddress.get(address) ?? 0;
    if (
      this.pendingTotal >= (this.options.maxPendingConnections ?? LISTEN_LIMITS.maxPendingConnections) ||
      fromAddress >= (this.options.maxPendingPerAddress ?? LISTEN_LIMITS.maxPendingPerAddress)
    ) {
      // Before TLS and before reading a byte: an excess connection costs nothing more.
      this.refusedCount++;
      raw.destroy();
      return;
    }
    this.pendingTotal++;
    this.pendingByAddress.set(address, fromAddress + 1);
    const timeoutMs = this.options.handshakeTimeoutMs ?? LISTEN_LIMITS.handshakeTimeoutMs;
    const entry: Pending = {
      address,
      released: false,
      deadline: performance.now() + timeoutMs,
      // One deadline for TLS, HELLO and proof: a peer that trickles bytes gains nothing.
      timer: setTimeout(() => raw.destroy(), timeoutMs),
    };
    entry.timer.unref();
    this.pending.set(raw, entry);
    this.sockets.add(raw);
    raw.on("close", () => {
      this.sockets.delete(raw);
      this.release(raw);
    });
    if (this.tls) this.tls.emit("connection", raw);
    else void this.onSecure(raw);
  }

  /**
   * The raw TCP socket under `socket` (itself without TLS). tls.Server wraps the socket it
   * was given and Node keeps it as `_parent`; the security tests check that a welcomed TLS
   * connection leaves the pending count, so a Node that changed this would fail them.
   */
  private rawOf(socket: Socket): Socket {
    return (socket as Socket & { _parent?: Socket })._parent ?? socket;
  }

  /** The connection left the pre-handshake state (welcomed or gone). */
  private release(raw: Socket): void {
    const entry = this.pending.get(raw);
    if (!entry || entry.released) return;
    entry.released = true;
    clearTimeout(entry.timer);
    this.pendingTotal--;
    const n = (this.pendingByAddress.get(entry.address) ?? 1) - 1;
    if (n <= 0) this.pendingByAddress.delete(entry.address);
    else this.pendingByAddress.set(entry.address, n);
  }

  private remainingMs(socket: Socket): number {
    const entry = this.pending.get(this.rawOf(socket));
    return entry
      ? Math.max(1, entry.deadline - performance.now())
      : (this.options.handshakeTimeoutMs ?? LISTEN_LIMITS.handshakeTimeoutMs);
  }

  private async onSecure(socket: Socket): Promise<void> {
    socket.on("error", () => undefined);
    try {
      const { message, rest } = await readHandshake(socket, this.remainingMs(socket));
      await this.onHello(socket, message, rest);
    } catch (err) {
      // A bad magic still gets a REJECT: a buggy DWCP dialer learns why, anything else sees garbage and hangs up.
      if (err instanceof NovaError && err.code === "NOVA_DWCP_HANDSHAKE" && socket.writable) {
        socket.end(this.reject(Buffer.alloc(16), RejectReason.BAD_HELLO));
        setTimeout(() => socket.destroy(), 1000).unref();
      } else {
        socket.destroy();
      }
    }
  }

  private reject(sessionId: Buffer, reason: number): Buffer {
    return encodeReply({
      accepted: false,
      version: 0,
      reason,
      listenerVersions: versionMask(this.options.versions ?? SUPPORTED_VERSIONS),
      capabilities: 0,
      sessionId,
      windowBytes: 0,
      maxPayload: 0,
      publicKey: Buffer.alloc(32),
    });
  }

  /** Sends a REJECT and closes; the socket is destroyed a second later at the latest. */
  private refuse(socket: Socket, sessionId: Buffer, reason: number): void {
    socket.end(this.reject(sessionId, reason));
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** The peer's client certificate fingerprint under mutual TLS, else null. */
  private peerCertOf(socket: Socket): string | null {
    const tls = socket as TLSSocket;
    if (typeof tls.getPeerCertificate !== "function" || !tls.authorized) return null;
    return tls.getPeerCertificate().fingerprint256 ?? null;
  }

  private async onHello(socket: Socket, message: Buffer, rest: Buffer): Promise<void> {
    let hello: Hello;
    try {
      hello = decodeHello(message);
    } catch {
      this.refuse(socket, Buffer.alloc(16), RejectReason.BAD_HELLO);
      return;
    }
    const ours = versionMask(this.options.versions ?? SUPPORTED_VERSIONS);
    const version = chooseVersion(hello.versions, ours) as DwcpVersion | 0;
    if (version === 0) {
      this.refuse(socket, hello.sessionId, RejectReason.NO_COMMON_VERSION);
      return;
    }
    const key = hello.sessionId.toString("hex");
    const maxPayload = Math.min(this.tuning.maxPayload, DEFAULT_MAX_PAYLOAD * 16);
    const welcome = (capabilities: number, publicKey?: Buffer): Buffer =>
      encodeReply({
        accepted: true,
        version,
        reason: 0,
        listenerVersions: ours,
        capabilities,
        sessionId: hello.sessionId,
        windowBytes: this.tuning.windowBytes,
        maxPayload,
        publicKey: publicKey ?? Buffer.alloc(32),
      });
    if (hello.join) {
      await this.onJoin(socket, hello, version, rest, welcome);
      return;
    }
    if (this.sessions.has(key)) {
      this.refuse(socket, hello.sessionId, RejectReason.BAD_HELLO);
      return;
    }
    if (this.sessions.size >= (this.options.maxSessions ?? LISTEN_LIMITS.maxSessions)) {
      this.refuse(socket, hello.sessionId, RejectReason.BUSY);
      return;
    }
    const share = newKeyShare();
    let keys: SessionKeys;
    try {
      keys = deriveSessionKeys(share, hello.publicKey, hello.sessionId, "listener");
    } catch {
      this.refuse(socket, hello.sessionId, RejectReason.BAD_HELLO);
      return;
    }
    const capabilities =
      version === 1 ? 0 : hello.capabilities & (this.options.capabilities ?? ALL_CAPABILITIES);
    const session = new DwcpSession({
      role: "listener",
      version,
      capabilities,
      sessionId: hello.sessionId,
      peerWindowBytes: hello.windowBytes,
      peerMaxPayload: hello.maxPayload,
      tuning: this.tuning,
      keys,
    });
    this.sessions.set(key, { session, keys, peerCert: this.peerCertOf(socket) });
    void session.closed.then(() => this.sessions.delete(key));
    this.release(this.rawOf(socket));
    socket.write(welcome(capabilities, share.publicKey));
    session.addConnection(socket, rest);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(session);
    } else {
      this.ready.push(session);
    }
  }

  /**
   * A JOIN must come over the same client certificate as the session's first connection
   * (under mutual TLS) and answer a fresh nonce with an HMAC under the session's join key,
   * which only the two ends derived. The session id alone, or a replayed JOIN, gets REJECT 5.
   */
  private async onJoin(
    socket: Socket,
    hello: Hello,
    version: DwcpVersion,
    rest: Buffer,
    welcome: (capabilities: number) => Buffer,
  ): Promise<void> {
    const known = this.sessions.get(hello.sessionId.toString("hex"));
    if (!known?.session.isOpen || known.session.version !== version) {
      this.refuse(socket, hello.sessionId, RejectReason.UNKNOWN_SESSION);
      return;
    }
    if (known.peerCert !== null && this.peerCertOf(socket) !== known.peerCert) {
      this.refuse(socket, hello.sessionId, RejectReason.JOIN_UNAUTHORIZED);
      return;
    }
    const nonce = randomBytes(32);
    socket.write(encodeChallenge(hello.sessionId, nonce));
    let answer: { message: Buffer; rest: Buffer };
    let proof: Buffer;
    try {
      // Anything but a PROOF here (frames sent right after the HELLO, say) is refused the same way.
      answer = await readHandshake(socket, this.remainingMs(socket), rest);
      const auth = decodeAuth(answer.message, 5);
      if (!auth.sessionId.equals(hello.sessionId)) throw new Error("session id changed");
      proof = auth.value;
    } catch {
      this.refuse(socket, hello.sessionId, RejectReason.JOIN_UNAUTHORIZED);
      return;
    }
    if (!verifyJoinProof(known.keys.join, hello.sessionId, nonce, proof)) {
      this.refuse(socket, hello.sessionId, RejectReason.JOIN_UNAUTHORIZED);
      return;
    }
    const session = known.session;
    if (!session.isOpen) {
      this.refuse(socket, hello.sessionId, RejectReason.UNKNOWN_SESSION);
      return;
    }
    if (
      session.version === 1 ||
      session.streamCount >= (this.options.maxStreamsPerSession ?? LISTEN_LIMITS.maxStreamsPerSession)
    ) {
      this.refuse(socket, hello.sessionId, RejectReason.SESSION_FULL);
      return;
    }
    this.release(this.rawOf(socket));
    socket.write(welcome(session.capabilities));
    session.addConnection(socket, answer.rest);
  }
}
