/**
 * The control exchange that opens an agent-to-agent DWCP session for one migration, and
 * the one place its messages are encoded and decoded. On the session the source dialed:
 *
 *   source                                   destination
 *   "hello" {"migrationId","token"}   ──▶    checks the token it issued (expectIncoming)
 *                                     ◀──    {"ok":true} | {"ok":false,"error":"…"}
 *   (measures the path, chooses the transport; QEMU's: ends the session here)
 *   "go" (opened and ended, no payload) ──▶  sets up its relays
 *   "inv"                             ◀──    the page cache's inventory (binary, the HDE
 *                                            format of dwcp/hde/receiver-mirror.ts)
 *
 * Messages are single JSON documents, UTF-8, one per channel message; field names and
 * order are the wire format. A peer's message that is not JSON, does not match its schema
 * or exceeds MAX_CONTROL_MESSAGE_BYTES is refused with NOVA_DWCP_PROTOCOL. Unknown extra
 * fields are tolerated, as they were before the schemas existed.
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { describeError, NovaError } from "../../lib/errors.js";

/** The channel labels of the exchange, in the order they open. */
export const CONTROL_CHANNELS = { hello: "hello", go: "go", inventory: "inv" } as const;

/**
 * A hello whose migrationId starts with this asks for an image offer (image-offer.ts), not
 * a migration: the rest is the offer's id, the token the offer's.
 */
export const OFFER_HELLO_PREFIX = "offer:";

/** Largest control message accepted (a hello is well under 200 bytes). */
export const MAX_CONTROL_MESSAGE_BYTES = 4096;

/** Where a source reaches the destination's DWCP listener for one migration. */
export interface DwcpEndpoint {
  host: string;
  port: number;
  /** The destination's cluster host name: its certificate must name it (DNS SAN). */
  name?: string;
  /** Proves the session serves this migration (base64url, issued by the destination). */
  token: string;
  /**
   * A migration from another cluster: the destination cluster's CA, the only one the
   * source trusts for this session (else its own cluster CA).
   */
  caPem?: string;
}

/** Source → destination: which migration this session serves, and the proof. */
export const HelloRequest = Type.Object({
  migrationId: Type.String({ minLength: 1, maxLength: 256 }),
  token: Type.String({ maxLength: 512 }),
});
/** A decoded hello. */
export type HelloRequest = Static<typeof HelloRequest>;

/** Destination → source: the session is accepted, or why not. */
export const HelloAnswer = Type.Union([
  Type.Object({ ok: Type.Literal(true) }),
  Type.Object({ ok: Type.Literal(false), error: Type.Optional(Type.String({ maxLength: 1024 })) }),
]);
/** A decoded answer. */
export type HelloAnswer = Static<typeof HelloAnswer>;

/** The hello a source sends. */
export function encodeHelloRequest(req: HelloRequest): Buffer {
  return Buffer.from(JSON.stringify({ migrationId: req.migrationId, token: req.token }));
}

/** A hello as the destination received it (null: the peer ended the channel silently). */
export function decodeHelloRequest(message: Buffer | null): HelloRequest {
  return decode("hello", HelloRequest, message);
}

/**
 * The dialing side's hello on a new session: sends `req` and returns the answer
 * (NOVA_DWCP_PROTOCOL when it is malformed).
 */
export async function sayHello(session: DwcpSession, req: HelloRequest): Promise<HelloAnswer> {
  const hello = session.openChannel(CONTROL_CHANNELS.hello);
  await hello.send(encodeHelloRequest(req));
  await hello.end();
  return decodeHelloAnswer(await hello.read());
}

/** The destination's answer. */
export function encodeHelloAnswer(answer: HelloAnswer): Buffer {
  const body = answer.ok ? { ok: true } : { ok: false, error: answer.error };
  return Buffer.from(JSON.stringify(body));
}

/** The answer as the source received it. */
export function decodeHelloAnswer(message: Buffer | null): HelloAnswer {
  return decode("hello answer", HelloAnswer, message);
}

function decode<S extends TSchema>(what: string, schema: S, message: Buffer | null): Static<S> {
  const refuse = (problem: string) =>
    new NovaError("NOVA_DWCP_PROTOCOL", `Malformed DWCP ${what}: ${problem}`, {
      details: { message: what, problem },
    });
  if (message === null) throw refuse("the peer ended the channel without sending it");
  if (message.length > MAX_CONTROL_MESSAGE_BYTES)
    throw refuse(`${message.length} bytes, more than ${MAX_CONTROL_MESSAGE_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(message.toString("utf8"));
  } catch (err) {
    throw refuse(`not JSON (${describeError(err)})`);
  }
  const first = [...Value.Errors(schema, value)][0];
  if (first) throw refuse(`${first.path || "(top level)"} ${first.message.toLowerCase()}`);
  return value as Static<S>;
}
