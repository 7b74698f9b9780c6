/**
 * ACP messages on a DWCP channel labelled `acp/1` (docs/federation.md §10): after the
 * hellos (peer-dial.ts, ass-listener.ts), the dialer sends a request, the listener one
 * answer, one exchange at a time. Each is one JSON document checked against its schema
 * and bounded: a statement is at most 64 KiB, so a message is at most 80 KiB.
 */
import { AcpAnswer, AcpRequest } from "../../api/types/acp.js";
import type { Channel } from "../../dwcp/amst/channel.js";
import { decodeMessage, send } from "../ass-wire.js";

/** The channel label. */
export const ACP_CHANNEL = "acp/1";
/** Largest request or answer accepted. */
export const MAX_ACP_MESSAGE_BYTES = 80 * 1024;

/** Sends a request or an answer. */
export function sendAcp(channel: Channel, message: AcpRequest | AcpAnswer): Promise<void> {
  return send(channel, message);
}

/** Reads a request, or null when the dialer ended the channel. */
export async function readAcpRequest(channel: Channel): Promise<AcpRequest | null> {
  const raw = await channel.read();
  if (raw === null) return null;
  return decodeMessage<AcpRequest>(raw, AcpRequest, "hand-off request", MAX_ACP_MESSAGE_BYTES);
}

/** Reads an answer; a refusal is thrown as the error it names (details.peerCode set). */
export async function readAcpAnswer(channel: Channel): Promise<AcpAnswer> {
  const raw = await channel.read();
  if (raw === null)
    return { type: "error", code: "NOVA_FED_PEER_UNREACHABLE", message: "the peer ended the channel" };
  return decodeMessage<AcpAnswer>(raw, AcpAnswer, "hand-off answer", MAX_ACP_MESSAGE_BYTES);
}
