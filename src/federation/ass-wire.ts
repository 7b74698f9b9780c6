/**
 * ASS messages on a DWCP channel (docs/federation.md §4): one JSON document per channel
 * message, checked against its schema. The dialer opens one channel, both sides send a
 * hello, then the dialer pulls and the listener answers with batches, one exchange at a
 * time. A message that is not JSON, breaks its schema or is over its bound is refused
 * with NOVA_FED_PROTOCOL; a refusal from the peer becomes the error it names.
 */
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import "./formats.js";
import { AssBatch, AssHello, AssPull, AssRefusal, FEDERATION_PROTOCOL } from "../api/types/federation.js";
import type { Channel } from "../dwcp/amst/channel.js";
import { ERROR_CODES, type ErrorCode } from "../lib/error-codes.js";
import { NovaError } from "../lib/errors.js";

/** The channel label. */
export const ASS_CHANNEL = "ass/1";
/** Largest pull or hello accepted (a vector of a few hundred clusters). */
export const MAX_PULL_BYTES = 256 * 1024;
/**
 * The DWCP session tuning of both ends of a federation session (ASS and ACP): messages up
 * to a batch (the bound applies to sending too); an RTT probe every 5 s rather than
 * DWCP's 500 ms, which alone made 97 % of an idle federation's traffic (docs/benchmarks.md,
 * "Federation"); and a session left without connections is given up after 5 s rather
 * than DWCP's 15 s. Resuming it saves nothing: ASS starts over from the version vector
 * and ACP from the hand-off's record, while a peer that restarted can never resume it,
 * so the long window only delayed both by 10 s after every restart of a peer.
 */
export const FEDERATION_SESSION_TUNING = {
  maxMessageBytes: 6 * 1024 * 1024,
  pingIntervalMs: 5000,
  reconnectTimeoutMs: 5000,
} as const;
/** Largest batch accepted (the sender cuts its batches well below). */
export const MAX_BATCH_BYTES = FEDERATION_SESSION_TUNING.maxMessageBytes;

/** What a sender puts in one batch at most. */
export const BATCH_LIMITS = { records: 2000, bytes: 4 * 1024 * 1024 } as const;

/** Sends one message (any of the federation's channels: one JSON document each). */
export function send(
  channel: Channel,
  message: AssHello | AssPull | AssBatch | AssRefusal | object,
): Promise<void> {
  return channel.send(Buffer.from(JSON.stringify(message), "utf8"));
}

/**
 * Decodes one message against `schema`: NOVA_FED_PROTOCOL when over `limit`, not JSON or
 * off the schema; a peer's `{"type":"error"}` refusal is thrown as the error it names.
 */
export function decodeMessage<T>(raw: Buffer, schema: TSchema, what: string, limit: number): T {
  if (raw.length > limit) {
    throw new NovaError(
      "NOVA_FED_PROTOCOL",
      `The peer sent a ${raw.length}-byte ${what}; at most ${limit} are accepted`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new NovaError("NOVA_FED_PROTOCOL", `The peer's ${what} is not JSON`);
  }
  const refusal = value as { type?: unknown; code?: unknown; message?: unknown };
  if (refusal?.type === "error" && Value.Check(AssRefusal, value)) {
    const code = (refusal.code as string) in ERROR_CODES ? (refusal.code as ErrorCode) : "NOVA_FED_PROTOCOL";
    throw new NovaError(code, `The peer refused: ${refusal.message as string}`, {
      details: { peerCode: refusal.code },
    });
  }
  if (!Value.Check(schema, value)) {
    const first = [...Value.Errors(schema, value)][0];
    throw new NovaError(
      "NOVA_FED_PROTOCOL",
      `The peer's ${what} does not match the protocol${first ? ` (${first.path || "/"}: ${first.message})` : ""}`,
    );
  }
  return value as T;
}

/** Reads the next message; NOVA_FED_PROTOCOL when the channel ended instead. */
export async function next(channel: Channel, what: string): Promise<Buffer> {
  const raw = await channel.read();
  if (raw === null)
    throw new NovaError("NOVA_FED_PROTOCOL", `The peer ended the channel instead of sending a ${what}`);
  return raw;
}

/** Reads a hello and checks the protocol version. */
export async function readHello(channel: Channel): Promise<AssHello> {
  const hello = decodeMessage<AssHello>(await next(channel, "hello"), AssHello, "hello", MAX_PULL_BYTES);
  if (hello.protocol !== FEDERATION_PROTOCOL) {
    throw new NovaError(
      "NOVA_FED_PROTOCOL",
      `The peer speaks federation protocol ${hello.protocol}, this cluster ${FEDERATION_PROTOCOL}; upgrade the older one`,
      { details: { peer: hello.protocol, ours: FEDERATION_PROTOCOL } },
    );
  }
  return hello;
}

/** Reads a pull, or null when the dialer ended the channel. */
export async function readPull(channel: Channel): Promise<AssPull | null> {
  const raw = await channel.read();
  if (raw === null) return null;
  return decodeMessage<AssPull>(raw, AssPull, "pull", MAX_PULL_BYTES);
}

/** Reads a batch. */
export async function readBatch(channel: Channel): Promise<AssBatch> {
  return decodeMessage<AssBatch>(await next(channel, "batch"), AssBatch, "batch", MAX_BATCH_BYTES);
}
