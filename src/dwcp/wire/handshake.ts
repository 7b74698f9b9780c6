/**
 * DWCP connection handshake (docs/dwcp.md §2). Owns the HELLO / reply messages, version
 * and capability negotiation, the session keys (X25519, HKDF) and the JOIN proof, and
 * reading exactly one handshake message off a socket with a time and size bound, so that
 * a peer that speaks something else fails fast and clearly.
 *
 * Every handshake message is 76 bytes, big-endian, and starts with the magic "DWCP":
 *
 *   HELLO (dialer -> listener)            REPLY (listener -> dialer)
 *   0  "DWCP"                             0  "DWCP"
 *   4  u8  kind = 1                       4  u8  kind = 2 (WELCOME) or 3 (REJECT)
 *   5  u8  supported versions bitmask     5  u8  chosen version (0 on REJECT)
 *   6  u8  flags (bit 0: JOIN)            6  u8  reject reason (0 on WELCOME)
 *   7  u8  reserved                       7  u8  listener's versions bitmask
 *   8  u32 capabilities offered           8  u32 capabilities agreed
 *  12  16  session id                    12  16  session id
 *  28  u32 receive window bytes          28  u32 receive window bytes
 *  32  u32 max frame payload             32  u32 max frame payload
 *  36  u32 reserved                      36  u32 reserved
 *  40  32  dialer's X25519 public key    40  32  listener's X25519 public key
 *          (zero on JOIN)                        (first WELCOME only; else zero)
 *  72  u32 CRC-32 of bytes 0..71         72  u32 CRC-32 of bytes 0..71
 *
 *   CHALLENGE (listener -> dialer, JOIN)  PROOF (dialer -> listener, JOIN)
 *   4  u8  kind = 4                       4  u8  kind = 5
 *  12  16  session id                    12  16  session id
 *  40  32  random nonce                  40  32  HMAC-SHA256(join key, "dwcp-join" ‖ id ‖ nonce)
 *  (other bytes zero; CRC at 72 as above)
 *
 * The first HELLO and WELCOME exchange ephemeral X25519 keys; both sides derive the
 * session's keys from the shared secret (HKDF-SHA256, salt = session id, info = both
 * public keys): the join key that JOIN proofs use and one digest key per direction for
 * the channels' keyed end-of-channel digests (§5). A JOIN is answered with a fresh nonce,
 * so a recorded JOIN cannot be replayed.
 */
import {
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  timingSafeEqual,
} from "node:crypto";
import type { Duplex } from "node:stream";
import { crc32 } from "node:zlib";
import { NovaError } from "../../lib/errors.js";

/** Size of every handshake message (HELLO, REPLY, CHALLENGE, PROOF). */
export const HANDSHAKE_BYTES = 76;
/** Bytes covered by the CRC. */
const BODY_BYTES = 72;
/** Size of the key / nonce / proof field at offset 40. */
export const KEY_BYTES = 32;
const MAGIC = Buffer.from("DWCP", "ascii");

/** Protocol versions this implementation speaks. */
export const SUPPORTED_VERSIONS = [1, 3] as const;
/** A DWCP protocol version. */
export type DwcpVersion = 1 | 3;

/** Capability flags negotiated in the handshake (only meaningful for v3). */
export const Capability = {
  /** Several connections per session (AMST striping, resend on connection loss). */
  MULTI_STREAM: 0x1,
  /** Hierarchical delta encoding of page streams. */
  HDE: 0x2,
  /** zstd compression of batches. */
  ZSTD: 0x4,
  /** RTT probes (PING/PONG) and capacity probes (PAD) for bandwidth prediction and mode detection. */
  PROBE: 0x8,
} as const;

/** Every capability this implementation can use. */
export const ALL_CAPABILITIES = Capability.MULTI_STREAM | Capability.HDE | Capability.ZSTD | Capability.PROBE;

/** Why a listener refused a HELLO. */
export const RejectReason = {
  NO_COMMON_VERSION: 1,
  UNKNOWN_SESSION: 2,
  BAD_HELLO: 3,
  SESSION_FULL: 4,
  /** A JOIN without a valid proof of the session's join key (or from another certificate). */
  JOIN_UNAUTHORIZED: 5,
  /** The listener has its maximum number of sessions. */
  BUSY: 6,
} as const;

const REJECT_TEXT: Record<number, string> = {
  1: "no protocol version in common",
  2: "the session to join does not exist (anymore)",
  3: "the HELLO was malformed",
  4: "the session has its maximum number of connections",
  5: "the JOIN did not prove knowledge of the session's key",
  6: "the listener has its maximum number of sessions",
};

/** A decoded HELLO. */
export interface Hello {
  versions: number;
  join: boolean;
  capabilities: number;
  sessionId: Buffer;
  windowBytes: number;
  maxPayload: number;
  /** The dialer's X25519 public key (first HELLO); zero bytes on JOIN. */
  publicKey: Buffer;
}

/** A decoded REPLY. */
export interface Reply {
  accepted: boolean;
  version: number;
  reason: number;
  listenerVersions: number;
  capabilities: number;
  sessionId: Buffer;
  windowBytes: number;
  maxPayload: number;
  /** The listener's X25519 public key (first WELCOME); zero bytes otherwise. */
  publicKey: Buffer;
}

/** Bitmask with bit (v-1) set for each version. */
export function versionMask(versions: readonly number[]): number {
  let m = 0;
  for (const v of versions) m |= 1 << (v - 1);
  return m & 0xff;
}

/** The versions in a bitmask, ascending. */
export function versionsOf(mask: number): number[] {
  const out: number[] = [];
  for (let v = 1; v <= 8; v++) if (mask & (1 << (v - 1))) out.push(v);
  return out;
}

/** Highest version both masks contain and this implementation speaks, or 0. */
export function chooseVersion(a: number, b: number): number {
  const common = a & b & versionMask(SUPPORTED_VERSIONS);
  for (let v = 8; v >= 1; v--) if (common & (1 << (v - 1))) return v;
  return 0;
}

function seal(buf: Buffer): Buffer {
  buf.writeUInt32BE(crc32(buf.subarray(0, BODY_BYTES)), BODY_BYTES);
  return buf;
}

function keyField(b: Buffer | undefined, target: Buffer): void {
  if (b && b.length > 0) b.copy(target, 40, 0, KEY_BYTES);
}

/** Encodes a HELLO. */
export function encodeHello(h: Hello): Buffer {
  const b = Buffer.alloc(HANDSHAKE_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt8(1, 4);
  b.writeUInt8(h.versions & 0xff, 5);
  b.writeUInt8(h.join ? 1 : 0, 6);
  b.writeUInt32BE(h.capabilities >>> 0, 8);
  h.sessionId.copy(b, 12, 0, 16);
  b.writeUInt32BE(h.windowBytes >>> 0, 28);
  b.writeUInt32BE(h.maxPayload >>> 0, 32);
  keyField(h.publicKey, b);
  return seal(b);
}

/** Encodes a REPLY. */
export function encodeReply(r: Reply): Buffer {
  const b = Buffer.alloc(HANDSHAKE_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt8(r.accepted ? 2 : 3, 4);
  b.writeUInt8(r.version, 5);
  b.writeUInt8(r.reason, 6);
  b.writeUInt8(r.listenerVersions & 0xff, 7);
  b.writeUInt32BE(r.capabilities >>> 0, 8);
  r.sessionId.copy(b, 12, 0, 16);
  b.writeUInt32BE(r.windowBytes >>> 0, 28);
  b.writeUInt32BE(r.maxPayload >>> 0, 32);
  keyField(r.publicKey, b);
  return seal(b);
}

/** Encodes a CHALLENGE (kind 4) or PROOF (kind 5): session id and a 32-byte value. */
function encodeAuth(kind: 4 | 5, sessionId: Buffer, value: Buffer): Buffer {
  const b = Buffer.alloc(HANDSHAKE_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt8(kind, 4);
  sessionId.copy(b, 12, 0, 16);
  value.copy(b, 40, 0, KEY_BYTES);
  return seal(b);
}

/** The listener's answer to a JOIN HELLO: a fresh nonce the dialer must sign. */
export function encodeChallenge(sessionId: Buffer, nonce: Buffer): Buffer {
  return encodeAuth(4, sessionId, nonce);
}

/** The dialer's answer to a CHALLENGE. */
export function encodeProof(sessionId: Buffer, proof: Buffer): Buffer {
  return encodeAuth(5, sessionId, proof);
}

/** Decodes a CHALLENGE or PROOF: the session id and the 32-byte value. */
export function decodeAuth(b: Buffer, kind: 4 | 5): { sessionId: Buffer; value: Buffer } {
  checkEnvelope(b, [kind]);
  return { sessionId: Buffer.from(b.subarray(12, 28)), value: Buffer.from(b.subarray(40, 72)) };
}

/** The kind byte of a handshake message already checked for magic and length. */
export function messageKind(b: Buffer): number {
  return b.readUInt8(4);
}

function handshakeError(message: string, details: Record<string, unknown> = {}): NovaError {
  return new NovaError("NOVA_DWCP_HANDSHAKE", `DWCP handshake failed: ${message}`, { details });
}

function checkEnvelope(b: Buffer, kinds: number[]): void {
  if (!b.subarray(0, 4).equals(MAGIC)) {
    throw handshakeError("the peer is not a DWCP endpoint (bad magic)", {
      received: b.subarray(0, 4).toString("latin1"),
    });
  }
  if (b.length !== HANDSHAKE_BYTES || crc32(b.subarray(0, BODY_BYTES)) !== b.readUInt32BE(BODY_BYTES))
    throw handshakeError("handshake checksum mismatch (a peer of another DWCP build?)");
  const kind = b.readUInt8(4);
  if (!kinds.includes(kind)) throw handshakeError(`unexpected handshake message kind ${kind}`);
}

/** Decodes and validates a HELLO; throws NOVA_DWCP_HANDSHAKE when malformed. */
export function decodeHello(b: Buffer): Hello {
  checkEnvelope(b, [1]);
  return {
    versions: b.readUInt8(5),
    join: (b.readUInt8(6) & 1) === 1,
    capabilities: b.readUInt32BE(8),
    sessionId: Buffer.from(b.subarray(12, 28)),
    windowBytes: b.readUInt32BE(28),
    maxPayload: b.readUInt32BE(32),
    publicKey: Buffer.from(b.subarray(40, 72)),
  };
}

/** Decodes and validates a REPLY; throws NOVA_DWCP_HANDSHAKE when malformed. */
export function decodeReply(b: Buffer): Reply {
  checkEnvelope(b, [2, 3]);
  return {
    accepted: b.readUInt8(4) === 2,
    version: b.readUInt8(5),
    reason: b.readUInt8(6),
    listenerVersions: b.readUInt8(7),
    capabilities: b.readUInt32BE(8),
    sessionId: Buffer.from(b.subarray(12, 28)),
    windowBytes: b.readUInt32BE(28),
    maxPayload: b.readUInt32BE(32),
    publicKey: Buffer.from(b.subarray(40, 72)),
  };
}

/** The typed error a dialer raises for a REJECT. */
export function rejectionError(reply: Reply, ourVersions: number): NovaError {
  const text = REJECT_TEXT[reply.reason] ?? `reason ${reply.reason}`;
  const details = {
    reason: reply.reason,
    ours: versionsOf(ourVersions),
    theirs: versionsOf(reply.listenerVersions),
  };
  if (reply.reason === RejectReason.NO_COMMON_VERSION) {
    return new NovaError(
      "NOVA_DWCP_VERSION",
      `DWCP peers share no protocol version: we speak ${details.ours.join(",")}, the peer speaks ${details.theirs.join(",") || "none"}`,
      { details },
    );
  }
  return handshakeError(`the peer refused: ${text}`, details);
}

/**
 * Reads exactly one handshake message from a socket. Resolves with it and any bytes that
 * arrived after it (the start of the frame stream); rejects with NOVA_DWCP_HANDSHAKE on
 * timeout, close, or as soon as the first bytes show the peer is not speaking DWCP.
 */
export function readHandshake(
  socket: Duplex,
  timeoutMs: number,
  initial: Buffer = Buffer.alloc(0),
): Promise<{ message: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    // Bytes that came with the previous handshake message (a JOIN's PROOF may follow its
    // HELLO in the same segment): at most one TCP read, so bounded.
    const parts: Buffer[] = [];
    let have = 0;
    let settled = false;
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.pause();
    };
    const fail = (err: NovaError): void => {
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      have += chunk.length;
      const all = Buffer.concat(parts);
      const magicLen = Math.min(4, all.length);
      if (!all.subarray(0, magicLen).equals(MAGIC.subarray(0, magicLen))) {
        fail(
          handshakeError("the peer is not a DWCP endpoint (bad magic)", {
            received: all.subarray(0, 16).toString("latin1"),
          }),
        );
        return;
      }
      if (have >= HANDSHAKE_BYTES) {
        cleanup();
        resolve({ message: all.subarray(0, HANDSHAKE_BYTES), rest: all.subarray(HANDSHAKE_BYTES) });
      }
    };
    const onError = (err: Error): void => fail(handshakeError(`connection error: ${err.message}`));
    const onClose = (): void => fail(handshakeError("the peer closed the connection during the handshake"));
    const timer = setTimeout(
      () => fail(handshakeError(`no handshake from the peer within ${timeoutMs} ms`, { timeoutMs })),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    if (initial.length > 0) onData(initial);
    if (!settled) socket.resume();
  });
}

// ---- session keys --------------------------------------------------------------------

/** An ephemeral X25519 key pair for one session's first handshake. */
export interface KeyShare {
  privateKey: KeyObject;
  /** Raw 32-byte public key as sent in HELLO / WELCOME. */
  publicKey: Buffer;
}

/** The keys both ends of a session derive from the first handshake. */
export interface SessionKeys {
  /** Proves a JOIN belongs to the session (challenge-response over a listener nonce). */
  join: Buffer;
  /** Keys the channels' end-of-channel digests, dialer → listener. */
  digestDialerToListener: Buffer;
  /** Keys the channels' end-of-channel digests, listener → dialer. */
  digestListenerToDialer: Buffer;
}

const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

/** A fresh X25519 key share. */
export function newKeyShare(): KeyShare {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const der = publicKey.export({ format: "der", type: "spki" });
  return { privateKey, publicKey: Buffer.from(der.subarray(der.length - KEY_BYTES)) };
}

/**
 * Derives the session's keys from our key share and the peer's public key. Throws
 * NOVA_DWCP_HANDSHAKE for a public key that is malformed or of low order (the shared
 * secret would be zero and known to anyone).
 */
export function deriveSessionKeys(
  ours: KeyShare,
  peerPublicKey: Buffer,
  sessionId: Buffer,
  role: "dialer" | "listener",
): SessionKeys {
  let shared: Buffer;
  try {
    const peer = createPublicKey({
      key: Buffer.concat([X25519_SPKI_PREFIX, peerPublicKey.subarray(0, KEY_BYTES)]),
      format: "der",
      type: "spki",
    });
    shared = diffieHellman({ privateKey: ours.privateKey, publicKey: peer });
  } catch (err) {
    throw handshakeError(`unusable key share from the peer: ${(err as Error).message}`);
  }
  const [dialerPub, listenerPub] =
    role === "dialer" ? [ours.publicKey, peerPublicKey] : [peerPublicKey, ours.publicKey];
  const info = Buffer.concat([Buffer.from("dwcp-session-keys", "ascii"), dialerPub, listenerPub]);
  const okm = Buffer.from(hkdfSync("sha256", shared, sessionId, info, 3 * KEY_BYTES));
  return {
    join: okm.subarray(0, KEY_BYTES),
    digestDialerToListener: okm.subarray(KEY_BYTES, 2 * KEY_BYTES),
    digestListenerToDialer: okm.subarray(2 * KEY_BYTES),
  };
}

/** The PROOF value for a CHALLENGE's nonce. */
export function joinProof(joinKey: Buffer, sessionId: Buffer, nonce: Buffer): Buffer {
  return createHmac("sha256", joinKey).update("dwcp-join").update(sessionId).update(nonce).digest();
}

/** Constant-time check of a PROOF. */
export function verifyJoinProof(joinKey: Buffer, sessionId: Buffer, nonce: Buffer, proof: Buffer): boolean {
  const want = joinProof(joinKey, sessionId, nonce);
  return proof.length === want.length && timingSafeEqual(proof, want);
}
