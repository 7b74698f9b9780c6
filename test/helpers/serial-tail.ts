/** Test helper: tails a guest's serial log file, timestamping each line as it appears. */
import { open } from "node:fs/promises";
import { waitFor } from "../../src/lib/wait.js";

/** One console line and when this process saw it. */
export interface Line {
  text: string;
  at: number;
}

/** Tails a serial log every 25 ms. */
export class SerialTail {
  readonly lines: Line[] = [];
  private offset = 0;
  private partial = "";
  private readonly timer: NodeJS.Timeout;
  private reading = false;

  constructor(readonly file: string) {
    this.timer = setInterval(() => void this.poll(), 25);
  }

  /** Reads what was appended since the last poll. */
  async poll(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      const fh = await open(this.file, "r").catch(() => undefined);
      if (!fh) return;
      try {
        const { size } = await fh.stat();
        if (size <= this.offset) return;
        const buf = Buffer.alloc(size - this.offset);
        await fh.read(buf, 0, buf.length, this.offset);
        this.offset = size;
        const parts = (this.partial + buf.toString("utf8")).split("\n");
        this.partial = parts.pop() ?? "";
        const now = Date.now();
        for (const p of parts) this.lines.push({ text: p.replace(/\r$/, ""), at: now });
      } finally {
        await fh.close();
      }
    } finally {
      this.reading = false;
    }
  }

  /** Waits (bounded) for a line after index `from` that matches `re`; the error shows the tail. */
  async waitLine(re: RegExp, opts: { timeoutMs: number; from?: number }): Promise<Line> {
    try {
      return await waitFor(() => this.lines.slice(opts.from ?? 0).find((l) => re.test(l.text)), {
        timeoutMs: opts.timeoutMs,
        intervalMs: 25,
        what: `${re} in ${this.file}`,
      });
    } catch (err) {
      const tail = this.lines
        .slice(-12)
        .map((l) => l.text)
        .join("\n");
      throw new Error(`${(err as Error).message}\n--- serial tail ---\n${tail}`);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
