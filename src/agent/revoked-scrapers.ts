/**
 * The metrics scraper certificates this agent refuses: the revoked, unexpired serials the
 * server sends with each heartbeat reply (the agent cannot ask the database), kept in
 * `<data dir>/revoked-scrapers.json` so a restarted agent refuses them before its first
 * heartbeat. Bounded like the reply that fills it.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";

const MAX = 10_000;
const SERIAL = /^[0-9a-f]{1,64}$/;

/** The revoked scraper serials, in memory and on disk. */
export class RevokedScrapers {
  private serials = new Set<string>();
  private readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, "revoked-scrapers.json");
  }

  /** Loads the saved list (none when absent or unreadable: the next heartbeat brings it). */
  async load(): Promise<void> {
    try {
      const saved = JSON.parse(await readFile(this.file, "utf8")) as unknown;
      if (Array.isArray(saved)) this.serials = valid(saved);
    } catch {
      this.serials = new Set();
    }
  }

  /** Whether the scraper certificate `serial` (normalised: lowercase hex, no leading zeros) is revoked. */
  has(serial: string): boolean {
    return this.serials.has(serial);
  }

  /** Takes the server's current list; saves it when it changed. */
  async replace(serials: readonly string[]): Promise<void> {
    const next = valid(serials);
    if (next.size === this.serials.size && [...next].every((s) => this.serials.has(s))) return;
    this.serials = next;
    await writeFile(`${this.file}.tmp`, JSON.stringify([...next]), { mode: 0o600 });
    await rename(`${this.file}.tmp`, this.file);
  }
}

function valid(list: readonly unknown[]): Set<string> {
  const out = new Set<string>();
  for (const s of list) if (typeof s === "string" && SERIAL.test(s) && out.size < MAX) out.add(s);
  return out;
}
