/**
 * The QMP wire protocol, free of sockets: a line-delimited JSON decoder that tolerates
 * partial chunks and several messages per chunk, classification of each message (greeting,
 * reply, error reply, event) and request encoding. The session layer (qmp.ts) feeds bytes
 * in and routes what comes out; command wrappers live in commands.ts.
 */
import { StringDecoder } from "node:string_decoder";
import { NovaError } from "../../lib/errors.js";

/** An asynchronous notification from QEMU (`{"event": …}`). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** QEMU's version as announced in the greeting and by query-version. */
export interface QmpVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** The greeting QEMU sends first on every QMP connection. */
export interface QmpGreeting {
  version: QmpVersion;
  capabilities: string[];
}

/** One decoded message, classified. */
export type QmpMessage =
  | { kind: "greeting"; greeting: QmpGreeting }
  | { kind: "return"; id: unknown; value: unknown }
  | { kind: "error"; id: unknown; qmpClass: string; desc: string }
  | { kind: "event"; event: QmpEvent };

/**
 * No QMP reply we use comes near this; a line this long without a newline means the peer
 * is not speaking QMP, and buffering it further would only grow memory.
 */
export const MAX_QMP_LINE_BYTES = 16 * 1024 * 1024;

function protocolError(message: string, details: Record<string, unknown> = {}): NovaError {
  return new NovaError("NOVA_QMP_PROTOCOL", message, { details });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function snippet(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** Classifies one parsed JSON value; throws NOVA_QMP_PROTOCOL when it is not a QMP message. */
export function classifyQmpMessage(value: unknown): QmpMessage {
  if (!isRecord(value)) {
    throw protocolError("QMP message is not a JSON object", { message: value });
  }
  if ("QMP" in value) {
    const qmp = value.QMP;
    if (!isRecord(qmp) || !isRecord(qmp.version)) {
      throw protocolError("QMP greeting has no version", { message: value });
    }
    const caps = Array.isArray(qmp.capabilities) ? qmp.capabilities.filter((c) => typeof c === "string") : [];
    return {
      kind: "greeting",
      greeting: { version: qmp.version as unknown as QmpVersion, capabilities: caps },
    };
  }
  if ("return" in value) {
    return { kind: "return", id: value.id, value: value.return };
  }
  if ("error" in value) {
    const err = value.error;
    if (!isRecord(err)) throw protocolError("QMP error reply has no error object", { message: value });
    return {
      kind: "error",
      id: value.id,
      qmpClass: typeof err.class === "string" ? err.class : "GenericError",
      desc: typeof err.desc === "string" ? err.desc : JSON.stringify(err),
    };
  }
  if (typeof value.event === "string") {
    const event: QmpEvent = { event: value.event };
    if (isRecord(value.data)) event.data = value.data;
    const ts = value.timestamp;
    if (isRecord(ts) && typeof ts.seconds === "number" && typeof ts.microseconds === "number") {
      event.timestamp = { seconds: ts.seconds, microseconds: ts.microseconds };
    }
    return { kind: "event", event };
  }
  throw protocolError("QMP message is neither greeting, reply nor event", { message: value });
}

/**
 * Splits a byte stream into QMP messages. QEMU ends each message with "\r\n"; a chunk may
 * hold part of a message (even part of a UTF-8 character) or several messages.
 */
export class QmpDecoder {
  private readonly text = new StringDecoder("utf8");
  private buffered = "";

  /** Feeds one chunk; returns the complete messages it finished. Throws NOVA_QMP_PROTOCOL on garbage. */
  push(chunk: Buffer | string): QmpMessage[] {
    this.buffered += typeof chunk === "string" ? chunk : this.text.write(chunk);
    const messages: QmpMessage[] = [];
    let newline = this.buffered.indexOf("\n");
    while (newline !== -1) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line.length > 0) messages.push(classifyQmpMessage(parseLine(line)));
      newline = this.buffered.indexOf("\n");
    }
    if (this.buffered.length > MAX_QMP_LINE_BYTES) {
      throw protocolError(`QMP message exceeds ${MAX_QMP_LINE_BYTES} bytes without a line end`);
    }
    return messages;
  }

  /** Text received after the last complete message (non-empty at close means a cut-off message). */
  get pending(): string {
    return this.buffered;
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (err) {
    throw protocolError(`QMP sent malformed JSON: ${snippet(line)}`, {
      line: snippet(line),
      cause: String(err),
    });
  }
}

/** Encodes one id-tagged command as a wire line. */
export function encodeQmpCommand(
  command: string,
  args: Record<string, unknown> | undefined,
  id: number,
): string {
  const request: Record<string, unknown> = { execute: command };
  if (args !== undefined) request.arguments = args;
  request.id = id;
  return `${JSON.stringify(request)}\n`;
}
