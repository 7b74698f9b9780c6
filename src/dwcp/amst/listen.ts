/**
 * The listening side of DWCP (docs/dwcp.md §2): accepts connections, runs TLS when
 * configured, answers HELLOs (new session, JOIN of an existing one, or a typed REJECT),
 * and hands out new sessions through `accept()`.
 */
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TlsOptions, type Server as TlsServer } from "node:tls";
import { NovaError } from "../../lib/errors.js";
import { DEFAULT_MAX_PAYLOAD } from "../wire/decoder.js";
import {
  ALL_CAPABILITIES,
  chooseVersion,
  type DwcpVersion,
  decodeHello,
  encodeReply,
  type Hello,
  RejectReason,
  readHandshake,
  SUPPORTED_VERSIONS,
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
  /** Bound on TLS + DWCP handshake per connection. @defaultValue 10000 */
  handshakeTimeoutMs?: number;
  /** Session tunables. */
  tuning?: Partial<SessionTuning>;
}

/** Accepts DWCP sessions on a TCP (or TLS) server. */
export class DwcpListener {
  private readonly sessions = new Map<string, DwcpSession>();
  private readonly ready: DwcpSession[] = [];
  private waiter: { resolve: (s: DwcpSession) => void; reject: (e: Error) => void } | null = null;
  private readonly tuning: SessionTuning;
  private closedFlag = false;
  private readonly sockets = new Set<Socket>();
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
          handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
        })
      : null;
    // A tls.Server given raw sockets does the whole server-side handshake, including the
    // client-certificate check that a bare TLSSocket would skip; failures just drop the socket.
    this.tls?.on("secureConnection", (s: Socket) => void this.onSecure(s));
    this.tls?.on("tlsClientError", (_err: Error, s: Socket) => s.destroy());
    server.on("connection", (s: Socket) => this.onConnection(s));
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
    for (const s of this.sessions.values()) s.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(raw: Socket): void {
    if (this.closedFlag) {
      raw.destroy();
      return;
    }
    this.sockets.add(raw);
    raw.on("close", () => this.sockets.delete(raw));
    raw.on("error", () => undefined);
    if (this.tls) this.tls.emit("connection", raw);
    else void this.onSecure(raw);
  }

  private async onSecure(socket: Socket): Promise<void> {
    socket.on("error", () => undefined);
    try {
      const { message, rest } = await readHandshake(socket, this.options.handshakeTimeoutMs ?? 10_000);
      this.onHello(socket, message, rest);
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
    });
  }

  private onHello(socket: Socket, message: Buffer, rest: Buffer): void {
    let hello: Hello;
    try {
      hello = decodeHello(message);
    } catch {
      socket.end(this.reject(Buffer.alloc(16), RejectReason.BAD_HELLO));
      return;
    }
    const ours = versionMask(this.options.versions ?? SUPPORTED_VERSIONS);
    const version = chooseVersion(hello.versions, ours) as DwcpVersion | 0;
    if (version === 0) {
      socket.end(this.reject(hello.sessionId, RejectReason.NO_COMMON_VERSION));
      return;
    }
    const key = hello.sessionId.toString("hex");
    const maxPayload = Math.min(this.tuning.maxPayload, DEFAULT_MAX_PAYLOAD * 16);
    const welcome = (capabilities: number): Buffer =>
      encodeReply({
        accepted: true,
        version,
        reason: 0,
        listenerVersions: ours,
        capabilities,
        sessionId: hello.sessionId,
        windowBytes: this.tuning.windowBytes,
        maxPayload,
      });
    if (hello.join) {
      const session = this.sessions.get(key);
      if (!session?.isOpen || session.version !== version) {
        socket.end(this.reject(hello.sessionId, RejectReason.UNKNOWN_SESSION));
        return;
      }
      if (session.version === 1 || session.streamCount >= (this.options.maxStreamsPerSession ?? 32)) {
        socket.end(this.reject(hello.sessionId, RejectReason.SESSION_FULL));
        return;
      }
      socket.write(welcome(session.capabilities));
      session.addConnection(socket, rest);
      return;
    }
    if (this.sessions.has(key)) {
      socket.end(this.reject(hello.sessionId, RejectReason.BAD_HELLO));
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
    });
    this.sessions.set(key, session);
    void session.closed.then(() => this.sessions.delete(key));
    socket.write(welcome(capabilities));
    session.addConnection(socket, rest);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(session);
    } else {
      this.ready.push(session);
    }
  }
}
