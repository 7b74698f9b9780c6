/**
 * The dialing side of a DWCP session (docs/dwcp.md §2): opens the first connection,
 * negotiates version and capabilities and the session keys, then opens the extra AMST
 * connections (JOIN, answering the listener's challenge with the join key) and gives the
 * session a way to redial when one breaks.
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { ConnectionOptions } from "node:tls";
import { NovaError } from "../../lib/errors.js";
import { DEFAULT_MAX_PAYLOAD } from "../wire/decoder.js";
import {
  ALL_CAPABILITIES,
  type DwcpVersion,
  decodeAuth,
  decodeReply,
  deriveSessionKeys,
  encodeHello,
  encodeProof,
  joinProof,
  messageKind,
  newKeyShare,
  readHandshake,
  rejectionError,
  type SessionKeys,
  SUPPORTED_VERSIONS,
  versionMask,
} from "../wire/handshake.js";
import { DwcpSession } from "./session.js";
import { DEFAULT_TUNING, type SessionTuning } from "./session-config.js";
import { type SocketFactory, tcpConnect, tlsClient } from "./transport.js";

/** How to reach and talk to a DWCP listener. */
export interface DialOptions {
  /** Listener host (ignored when `connect` is given). @defaultValue "127.0.0.1" */
  host?: string;
  /** Listener port (ignored when `connect` is given). */
  port?: number;
  /** Custom raw-socket factory, e.g. one that dials from inside a network namespace. */
  connect?: SocketFactory;
  /** TLS 1.3 client options (ca, cert, key, servername); omitted means plain TCP. */
  tls?: ConnectionOptions;
  /** Versions offered. @defaultValue [1, 3] */
  versions?: readonly DwcpVersion[];
  /** Capabilities offered for v3. @defaultValue all */
  capabilities?: number;
  /** Connections to open at start for a v3 multi-stream session. @defaultValue 1 */
  streams?: number;
  /** Bound on connect + TLS + DWCP handshake. @defaultValue 10000 */
  handshakeTimeoutMs?: number;
  /** Session tunables. */
  tuning?: Partial<SessionTuning>;
}

/** Dials a DWCP listener and returns the negotiated session. */
export async function dialSession(options: DialOptions): Promise<DwcpSession> {
  const tuning: SessionTuning = { ...DEFAULT_TUNING, ...options.tuning };
  const timeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const versions = versionMask(options.versions ?? SUPPORTED_VERSIONS);
  const capabilities = options.capabilities ?? ALL_CAPABILITIES;
  const sessionId = randomBytes(16);
  const maxPayload = Math.min(tuning.maxPayload, DEFAULT_MAX_PAYLOAD * 16);

  const open = async (): Promise<Socket> => {
    const raw = options.connect
      ? await options.connect()
      : await tcpConnect(options.host ?? "127.0.0.1", options.port ?? 0, timeoutMs);
    if (!options.tls) return raw;
    try {
      return await tlsClient(raw, options.tls, timeoutMs);
    } catch (err) {
      raw.destroy();
      throw err;
    }
  };

  const share = newKeyShare();
  let keys: SessionKeys | null = null;

  const handshake = async (join: boolean, expectVersion?: number) => {
    const socket = await open();
    try {
      const t0 = performance.now();
      socket.write(
        encodeHello({
          versions,
          join,
          capabilities,
          sessionId,
          windowBytes: tuning.windowBytes,
          maxPayload,
          publicKey: join ? Buffer.alloc(32) : share.publicKey,
        }),
      );
      let { message, rest } = await readHandshake(socket, timeoutMs);
      if (join && keys && messageKind(message) === 4) {
        // The listener's challenge: prove we hold the session's join key (§2.2).
        const { sessionId: challenged, value: nonce } = decodeAuth(message, 4);
        if (!challenged.equals(sessionId)) {
          throw new NovaError(
            "NOVA_DWCP_HANDSHAKE",
            "DWCP handshake failed: the challenge names another session",
          );
        }
        socket.write(encodeProof(sessionId, joinProof(keys.join, sessionId, nonce)));
        ({ message, rest } = await readHandshake(socket, timeoutMs, rest));
      }
      const rttMs = performance.now() - t0;
      const reply = decodeReply(message);
      if (!reply.accepted) throw rejectionError(reply, versions);
      if (
        !reply.sessionId.equals(sessionId) ||
        (expectVersion !== undefined && reply.version !== expectVersion)
      ) {
        throw new NovaError(
          "NOVA_DWCP_HANDSHAKE",
          "DWCP handshake failed: the reply does not match the session",
        );
      }
      if (reply.version !== 1 && reply.version !== 3) {
        throw new NovaError(
          "NOVA_DWCP_VERSION",
          `The DWCP peer chose version ${reply.version}, which was not offered`,
        );
      }
      const derived = join ? null : deriveSessionKeys(share, reply.publicKey, sessionId, "dialer");
      return { socket, rest, reply, rttMs, derived };
    } catch (err) {
      socket.destroy();
      throw err;
    }
  };

  const first = await handshake(false);
  const sessionKeys = first.derived;
  if (!sessionKeys) throw new NovaError("NOVA_DWCP_HANDSHAKE", "DWCP handshake failed: no session keys");
  keys = sessionKeys;
  const version = first.reply.version as DwcpVersion;
  const session = new DwcpSession({
    role: "dialer",
    version,
    capabilities: version === 1 ? 0 : first.reply.capabilities & capabilities,
    sessionId,
    peerWindowBytes: first.reply.windowBytes,
    peerMaxPayload: first.reply.maxPayload,
    tuning,
    keys: sessionKeys,
    handshakeRttMs: first.rttMs,
    redial: async () => {
      const { socket, rest } = await handshake(true, version);
      return { socket, rest };
    },
  });
  session.addConnection(first.socket, first.rest);
  if ((options.streams ?? 1) > 1) await session.setStreamCount(options.streams ?? 1);
  return session;
}
