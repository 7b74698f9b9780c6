/**
 * An execution's log writer: every line is masked before it is stored in execution_logs
 * or published live. Lines are written in small batches, and a batch is masked as one
 * text, so a secret split across consecutive lines is still caught; the last line of a
 * batch is held back until the next one (or the final flush) for the same reason.
 */
import type { Store } from "../cluster/store/store.js";
import type { Masker } from "./masker.js";

/** One log line. */
export interface LogLine {
  step: number | null;
  level: string;
  message: string;
}

const FLUSH_MS = 200;

/** Buffered, masked log of one execution. */
export class ExecLogger {
  private buffer: LogLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly executionId: string,
    private readonly masker: Masker,
    /** Stores masked lines (the runner's writes them fenced by its job's lease). */
    private readonly write: (lines: LogLine[]) => Promise<void>,
  ) {}

  /** Adds a line (multi-line text becomes several lines). */
  line(step: number | null, message: string, level = "info"): void {
    for (const part of message.split(/\r?\n/)) this.buffer.push({ step, level, message: part });
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush(false);
    }, FLUSH_MS);
  }

  /** Masks and writes what is buffered; `final` also writes the held-back last line. */
  flush(final = true): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const keep = final ? 0 : 1;
    if (this.buffer.length <= keep) return this.writing;
    const { lines, consumed } = maskBatch(this.masker, this.buffer, keep === 0);
    this.buffer.splice(0, consumed);
    this.writing = this.writing
      .then(() => this.write(lines))
      .then(() => {
        const at = new Date().toISOString();
        this.store.bus.publish(
          lines.map((l) => ({
            id: 0,
            at,
            type: "execution.log",
            resourceType: "execution",
            resourceId: this.executionId,
            data: { step: l.step, level: l.level, message: l.message },
          })),
        );
      })
      .catch(() => {
        // The database is away: these lines are lost, the run itself carries on.
      });
    return this.writing;
  }
}

/**
 * Masks buffered lines as one text, so a secret split across lines is seen whole. Unless
 * `all`, the last line is only look-ahead: it is written next time, unless a mask joined
 * it to the lines before (then it is consumed now, masked together with them).
 */
export function maskBatch(
  masker: Masker,
  buffer: LogLine[],
  all: boolean,
): { lines: LogLine[]; consumed: number } {
  const texts = buffer.map((l) => l.message);
  const joined = texts.join("\n");
  const masked = masker.mask(joined);
  const emit = all ? buffer.length : buffer.length - 1;
  if (masked === joined) return { lines: buffer.slice(0, emit), consumed: emit };
  const parts = masked.split("\n");
  if (parts.length === texts.length) {
    return {
      lines: buffer.slice(0, emit).map((l, i) => ({ ...l, message: parts[i]! })),
      consumed: emit,
    };
  }
  // A mask spanned lines: the merged text cannot be split back line for line, so all of
  // it goes out now, each part with the metadata of the line it starts on (approximately).
  return {
    lines: parts.map((message, i) => ({ ...buffer[Math.min(i, buffer.length - 1)]!, message })),
    consumed: buffer.length,
  };
}
