/**
 * A Server-Sent Events parser for streams read with fetch (api/events.ts says why not
 * EventSource). Bounded: a message that grows past `maxBytes` without ending
 * is an error, so a broken or hostile stream cannot fill the tab's memory.
 */

/** One dispatched SSE message. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** Thrown when one message exceeds the parser's bound. */
export class SseOverflow extends Error {}

/** Incremental parser: push decoded text, get the complete messages it finished. */
export class SseParser {
  private buffer = "";
  private id: string | null = null;
  private event = "";
  private data: string[] = [];
  private dataChars = 0;

  constructor(private readonly maxChars = 1 << 20) {}

  /** Feeds text; returns the messages completed by it. */
  push(text: string): SseMessage[] {
    this.buffer += text;
    const out: SseMessage[] = [];
    for (;;) {
      const nl = this.buffer.search(/\r\n|\r|\n/);
      // A CR at the end may be the first half of a CRLF split across chunks: wait for more.
      if (nl < 0 || (nl === this.buffer.length - 1 && this.buffer[nl] === "\r")) break;
      const sep = this.buffer.startsWith("\r\n", nl) ? 2 : 1;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + sep);
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    if (this.buffer.length + this.dataChars > this.maxChars)
      throw new SseOverflow(`an event stream message exceeded ${this.maxChars} characters`);
    return out;
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return undefined;
      }
      const msg = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      this.dataChars = 0;
      return msg;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.dataChars += value.length + 1;
    } else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return undefined;
  }
}
