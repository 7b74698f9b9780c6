/**
 * Generic TCP forwarding over DWCP channels, for the NBD disk-mirror traffic of a
 * migration (docs/migration-stream.md, "Byte relay"): on the source, a local listener the
 * block mirror connects to; each accepted connection becomes one channel
 * `<label>/<n>`; on the destination, each such channel becomes a connection to the target
 * (the destination QEMU's NBD export). Bytes are carried verbatim, each chunk zstd-coded
 * when that shrinks it; the channel digest covers integrity; channel end = half-close.
 * Disk-block dedup against the destination's cache is not done here (a later step).
 */
import type { Server, Socket } from "node:net";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { describeError, NovaError } from "../../lib/errors.js";
import type { ChannelRouter } from "./channel-router.js";
import { SegmentCompressor, SegmentDecoder } from "./relay-codec.js";
import { connectLocal, type LocalEndpoint, listenLocal, qemuUri, waitDrain } from "./socket-io.js";

/** Bytes moved by a byte relay. */
export interface ByteRelayStats {
  connections: number;
  /** Bytes read from local sockets and sent. */
  bytesIn: number;
  /** Message bytes sent on the channels (before frame headers). */
  bytesOut: number;
  /** Bytes received and written to local sockets. */
  bytesDelivered: number;
}

/** Pumps one socket ⇄ one channel until both directions ended; rejects on any failure. */
async function pump(
  sock: Socket,
  ch: Channel,
  compressor: SegmentCompressor,
  stats: ByteRelayStats,
): Promise<void> {
  const decoder = new SegmentDecoder();
  const failed = (err: unknown): Error => {
    const e =
      err instanceof NovaError
        ? err
        : new NovaError("NOVA_MIGRATION_RELAY", `Byte relay "${ch.label}" failed: ${describeError(err)}`, {
            cause: err,
          });
    sock.destroy();
    if (ch.error === null) ch.abort(e.message);
    return e;
  };
  const up = new Promise<void>((resolve, reject) => {
    let chain = Promise.resolve();
    sock.on("data", (d: Buffer) => {
      sock.pause();
      stats.bytesIn += d.length;
      const msg = compressor.encode(d);
      stats.bytesOut += msg.length;
      chain = chain
        .then(() => ch.send(msg))
        .then(
          () => {
            sock.resume();
          },
          (err: unknown) => reject(failed(err)),
        );
    });
    sock.on("end", () => {
      chain = chain.then(() => ch.end()).then(resolve, (err: unknown) => reject(failed(err)));
    });
    sock.on("error", () => undefined);
    sock.on("close", () => {
      if (!sock.readableEnded) reject(failed(new Error("the local connection broke")));
    });
  });
  const down = (async () => {
    try {
      for (;;) {
        const m = await ch.read();
        if (m === null) break;
        const data = decoder.body(m);
        stats.bytesDelivered += data.length;
        if (!sock.write(data)) await waitDrain(sock);
      }
      sock.end();
    } catch (err) {
      throw failed(err);
    }
  })();
  try {
    await Promise.all([up, down]);
  } finally {
    sock.destroy();
  }
}

/** Source side: a local listener whose connections are forwarded over the session. */
export class ByteRelaySource {
  readonly stats: ByteRelayStats = { connections: 0, bytesIn: 0, bytesOut: 0, bytesDelivered: 0 };
  private server: Server | null = null;
  private endpointValue: LocalEndpoint | null = null;
  private readonly pumps = new Set<Promise<void>>();
  private readonly compressor: SegmentCompressor;
  private lastError: Error | null = null;

  private constructor(
    private readonly session: DwcpSession,
    private readonly label: string,
    level: number,
  ) {
    this.compressor = new SegmentCompressor(level);
  }

  /** Listens on `listen` (default 127.0.0.1, kernel-chosen port). */
  static async start(options: {
    session: DwcpSession;
    label: string;
    listen?: LocalEndpoint;
    /** zstd level per chunk (0 = off). @defaultValue 1 */
    level?: number;
  }): Promise<ByteRelaySource> {
    const r = new ByteRelaySource(options.session, options.label, options.level ?? 1);
    const { server, endpoint } = await listenLocal(options.listen ?? { port: 0 }, (s) => r.onConnection(s));
    r.server = server;
    r.endpointValue = endpoint;
    return r;
  }

  /** Where local clients connect. */
  get endpoint(): LocalEndpoint {
    return this.endpointValue!;
  }

  /** e.g. for QEMU's NBD client: "tcp:127.0.0.1:PORT". */
  get uri(): string {
    return qemuUri(this.endpointValue!);
  }

  /** The first error of any connection, if one failed. */
  get error(): Error | null {
    return this.lastError;
  }

  private onConnection(s: Socket): void {
    let ch: Channel;
    try {
      ch = this.session.openChannel(`${this.label}/${this.stats.connections++}`);
    } catch {
      s.destroy();
      return;
    }
    s.setNoDelay(true);
    const p = pump(s, ch, this.compressor, this.stats).catch((err: unknown) => {
      this.lastError ??= err instanceof Error ? err : new Error(String(err));
    });
    this.pumps.add(p);
    void p.finally(() => this.pumps.delete(p));
  }

  /** Stops listening and waits for open connections to finish. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await Promise.all(this.pumps);
  }
}

/** Destination side: connects every `<label>/…` channel to `target`. */
export class ByteRelayTarget {
  readonly stats: ByteRelayStats = { connections: 0, bytesIn: 0, bytesOut: 0, bytesDelivered: 0 };
  private readonly compressor: SegmentCompressor;
  private readonly pumps = new Set<Promise<void>>();
  private lastError: Error | null = null;

  constructor(options: { router: ChannelRouter; label: string; target: LocalEndpoint; level?: number }) {
    this.compressor = new SegmentCompressor(options.level ?? 1);
    options.router.onPrefix(`${options.label}/`, (ch) => {
      this.stats.connections++;
      const p = connectLocal(options.target)
        .then((s) => pump(s, ch, this.compressor, this.stats))
        .catch((err: unknown) => {
          if (ch.error === null) ch.abort(describeError(err));
          this.lastError ??= err instanceof Error ? err : new Error(String(err));
        });
      this.pumps.add(p);
      void p.finally(() => this.pumps.delete(p));
    });
  }

  /** The first error of any connection, if one failed. */
  get error(): Error | null {
    return this.lastError;
  }

  /** Waits for open connections to finish. */
  async idle(): Promise<void> {
    await Promise.all(this.pumps);
  }
}
