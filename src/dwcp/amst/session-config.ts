/**
 * Configuration and reporting types of an AMST session (docs/dwcp.md §4): the tunables
 * with their defaults, what the handshake settles, and the statistics snapshot.
 */
import type { Socket } from "node:net";
import type { DwcpVersion, SessionKeys } from "../wire/handshake.js";

/** Tunables of a session. Both peers should use compatible values; the window is negotiated. */
export interface SessionTuning {
  /** Receive window this side grants the peer (bytes). @defaultValue 8 MiB */
  windowBytes: number;
  /** Largest frame payload this side accepts. @defaultValue 256 KiB */
  maxPayload: number;
  /** Largest channel message this side reassembles. @defaultValue 8 MiB */
  maxMessageBytes: number;
  /** A connection whose oldest frame is unacknowledged this long is replaced. @defaultValue 8000 */
  stallTimeoutMs: number;
  /** How long a session without connections waits for one before failing. @defaultValue 15000 */
  reconnectTimeoutMs: number;
  /** RTT probe interval per session. @defaultValue 500 */
  pingIntervalMs: number;
  /** Longest an acknowledgement is delayed. @defaultValue 5 */
  ackDelayMs: number;
  /** Acknowledge at once after this many received bytes. @defaultValue 128 KiB */
  ackEveryBytes: number;
  /** Per-connection user-space queue above which no more frames are assigned to it. @defaultValue 512 KiB */
  connectionHighWater: number;
  /** How long close() waits for the peer. @defaultValue 5000 */
  closeTimeoutMs: number;
  /**
   * Hard bound on one connection's user-space send queue (bytes). Frames are assigned only
   * below connectionHighWater, but control replies (ACK, CREDIT, PONG) and capacity probes
   * are written regardless: a peer that does not read its socket would make them pile up.
   * Past this bound the connection is dropped. @defaultValue 32 MiB
   */
  maxConnectionQueueBytes: number;
  /**
   * A session whose peer has acknowledged nothing for this long while frames are in flight
   * fails (every version, even with a single connection): a peer that stops reading is
   * dropped, not buffered for forever. @defaultValue 60000
   */
  peerUnreadTimeoutMs: number;
  /** Channels open at once (both sides'); a peer's OPEN beyond it ends the session. @defaultValue 1024 */
  maxOpenChannels: number;
  /** PINGs a peer may send per second on one connection (sustained); more ends the session. @defaultValue 20 */
  peerPingsPerSecond: number;
  /** PINGs a peer may send in a burst on one connection. @defaultValue 40 */
  peerPingBurst: number;
}

/** Defaults for SessionTuning. */
export const DEFAULT_TUNING = {
  windowBytes: 8 * 1024 * 1024,
  maxPayload: 256 * 1024,
  maxMessageBytes: 8 * 1024 * 1024,
  stallTimeoutMs: 8000,
  reconnectTimeoutMs: 15_000,
  pingIntervalMs: 500,
  ackDelayMs: 5,
  ackEveryBytes: 128 * 1024,
  connectionHighWater: 512 * 1024,
  closeTimeoutMs: 5000,
  maxConnectionQueueBytes: 32 * 1024 * 1024,
  peerUnreadTimeoutMs: 60_000,
  maxOpenChannels: 1024,
  peerPingsPerSecond: 20,
  peerPingBurst: 40,
} as const satisfies SessionTuning;

/** What the handshake settled. */
export interface SessionParams {
  role: "dialer" | "listener";
  version: DwcpVersion;
  capabilities: number;
  sessionId: Buffer;
  /** The peer's receive window: our send credit. */
  peerWindowBytes: number;
  /** The peer's largest accepted payload. */
  peerMaxPayload: number;
  tuning: SessionTuning;
  /** Keys derived in the first handshake (join proof, keyed channel digests). */
  keys: SessionKeys;
  /** RTT of the handshake exchange (ms): the first RTT estimate, before any probe. */
  handshakeRttMs?: number;
  /** Dialer only: opens one more handshaken connection to the same session (JOIN). */
  redial?: () => Promise<{ socket: Socket; rest: Buffer }>;
}

/** A point-in-time view of a session's transport, for PBA, metrics and tests. */
export interface SessionStats {
  streams: number;
  /** Smoothed RTT (ms), or null before the first probe. */
  srttMs: number | null;
  /** Lowest RTT seen (ms), or null. */
  minRttMs: number | null;
  /** Wire bytes of sequenced frames the peer confirmed receiving with all before them. */
  bytesAcked: number;
  /**
   * Wire bytes of sequenced frames the peer received, in order or not. Unlike bytesAcked
   * it does not stall while one lossy stream holds up the in-order point, so it is the
   * goodput signal for PBA.
   */
  bytesReceived: number;
  /** Wire bytes written to all connections, resends and probes included. */
  bytesWritten: number;
  /** Of bytesWritten, bytes of PAD frames sent by capacity probes. */
  probeBytes: number;
  /** Frames written again after a connection was lost or stalled. */
  framesResent: number;
  /** Connections replaced after a failure or stall. */
  connectionsReplaced: number;
  /** Bytes held for the peer (retained + queued), i.e. send-side memory. */
  outstandingBytes: number;
  /**
   * True when the network is the bottleneck right now: frames wait because every
   * connection's socket buffer is full, or senders wait for credit while most of the
   * window has not even reached the peer (it sits in kernel buffers and on the wire).
   */
  backlogged: boolean;
  /** True when senders wait for the peer's credit (receiver or window bound). */
  creditLimited: boolean;
}
