/**
 * What the relays need from a stream format: split a byte stream into verbatim bytes and
 * 4 KiB pages that go through HDE, with a page number that names the page's place (a RAM
 * address, a disk offset) so deltas find its previous version. Implementations: QEMU's
 * migration stream (stream-parser.ts) and the NBD client's requests (nbd-splitter.ts).
 *
 * Every implementation keeps the invariant the relay's safety rests on: each input byte
 * comes out exactly once, in order; understanding the format only decides which event a
 * byte lands in, never its value.
 */
import { MigrationStreamParser, pageNumber } from "./stream-parser.js";

/** A piece of the stream: verbatim bytes, or one page's 4096 data bytes. */
export type SplitEvent = { kind: "bytes"; data: Buffer } | { kind: "page"; pageNo: number; data: Buffer };

/** Incremental splitter of one stream. */
export interface StreamSplitter {
  push(chunk: Buffer): SplitEvent[];
  /** The input ended; `truncated` when it ended inside a record being interpreted. */
  end(): { events: SplitEvent[]; truncated: boolean };
  /** "parsing", or why it stopped interpreting ("tail", "fallback", "done"). */
  readonly mode: string;
  readonly reason: string | null;
  /** Zero pages the format encodes itself (carried verbatim, counted for progress). */
  readonly formatZeroPages: number;
  /**
   * The events' bytes may differ from the input (NBD cookies given by the relay): the
   * stream's digest is then taken over the events, the stream as relayed.
   */
  readonly rewrites?: boolean;
}

/** QEMU's outgoing migration stream (7.2 and 10.0). */
export class QemuStreamSplitter implements StreamSplitter {
  private readonly parser = new MigrationStreamParser();

  push(chunk: Buffer): SplitEvent[] {
    return this.parser.push(chunk).map(toSplit);
  }

  end(): { events: SplitEvent[]; truncated: boolean } {
    const e = this.parser.end();
    return { events: e.events.map(toSplit), truncated: e.truncated };
  }

  get mode(): string {
    return this.parser.mode;
  }

  get reason(): string | null {
    return this.parser.reason;
  }

  get formatZeroPages(): number {
    return this.parser.stats.zeroPages;
  }
}

function toSplit(e: ReturnType<MigrationStreamParser["push"]>[number]): SplitEvent {
  return e.kind === "bytes" ? e : { kind: "page", pageNo: pageNumber(e.blockIndex, e.offset), data: e.data };
}
