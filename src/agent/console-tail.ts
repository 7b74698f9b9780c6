/** Reads the last lines of a (possibly large, still growing) console log without loading it whole. */
import { open } from "node:fs/promises";

/** The last `count` complete-or-trailing lines of the file; [] when it does not exist yet. */
export async function readLastLines(file: string, count: number, maxBytes = 1 << 20): Promise<string[]> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  try {
    const { size } = await handle.stat();
    let chunk = Math.min(size, 16_384);
    for (;;) {
      const buf = Buffer.alloc(chunk);
      await handle.read(buf, 0, chunk, size - chunk);
      const text = buf.toString("utf8").replace(/\r/g, "");
      const lines = text.split("\n");
      if (lines.at(-1) === "") lines.pop();
      // The first line may be cut unless we read from the start of the file.
      if (lines.length > count || chunk === size || chunk >= maxBytes) {
        return lines.slice(chunk === size ? -count : Math.max(1, lines.length - count));
      }
      chunk = Math.min(size, chunk * 4, maxBytes);
    }
  } finally {
    await handle.close();
  }
}
