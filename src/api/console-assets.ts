/**
 * The web console's files (dist/console, built by Vite), read once at start into memory
 * with the .br and .gz twins the build wrote. Requests are answered from this map: no
 * path ever reaches the filesystem, so no request can name a file outside it, and the
 * map is bounded in files and bytes.
 */

import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";

/** One file of the console, ready to send. */
export interface ConsoleAsset {
  type: string;
  body: Buffer;
  br?: Buffer;
  gzip?: Buffer;
  etag: string;
  /** Hashed by the build (under /assets/): its name changes when its content does. */
  immutable: boolean;
}

/** The console's files by URL path ("/index.html", "/assets/index-abc.js"). */
export type ConsoleAssets = ReadonlyMap<string, ConsoleAsset>;

/** Bounds on what is loaded: a console build is a few files and a few hundred KB. */
export const CONSOLE_LIMITS = { maxFiles: 500, maxBytes: 32 * 1024 * 1024 };

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/** The default place of the built console: dist/console of this package (from src/ or dist/). */
export function defaultConsoleDir(): string {
  return path.resolve(import.meta.dirname, "..", "..", "dist", "console");
}

/**
 * Loads the console from `dir`; undefined when it is not built (no index.html). Throws
 * when the directory holds more than CONSOLE_LIMITS allows.
 */
export async function loadConsoleAssets(dir: string): Promise<ConsoleAssets | undefined> {
  try {
    if (!(await stat(path.join(dir, "index.html"))).isFile()) return undefined;
  } catch {
    return undefined;
  }
  const files = await walk(dir, "");
  const assets = new Map<string, ConsoleAsset>();
  let total = 0;
  // Sizes are checked before reading, so an oversized file is never read at all.
  const take = async (rel: string): Promise<Buffer> => {
    total += (await stat(path.join(dir, rel))).size;
    if (total > CONSOLE_LIMITS.maxBytes)
      throw new Error(`the console in ${dir} exceeds ${CONSOLE_LIMITS.maxBytes} bytes`);
    return readFile(path.join(dir, rel));
  };
  const present = new Set(files);
  for (const rel of files) {
    if (rel.endsWith(".br") || rel.endsWith(".gz")) continue;
    const body = await take(rel);
    const asset: ConsoleAsset = {
      type: TYPES[path.extname(rel)] ?? "application/octet-stream",
      body,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
      immutable: rel.startsWith("assets/"),
    };
    if (present.has(`${rel}.br`)) asset.br = await take(`${rel}.br`);
    if (present.has(`${rel}.gz`)) asset.gzip = await take(`${rel}.gz`);
    assets.set(`/${rel}`, asset);
  }
  return assets;
}

async function walk(root: string, rel: string, out: string[] = []): Promise<string[]> {
  for (const entry of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) await walk(root, child, out);
    else if (entry.isFile()) {
      out.push(child);
      if (out.length > CONSOLE_LIMITS.maxFiles)
        throw new Error(`the console in ${root} has more than ${CONSOLE_LIMITS.maxFiles} files`);
    }
  }
  return out;
}

/** The encoding to send for an Accept-Encoding header: br, then gzip, else none. */
export function chooseEncoding(
  acceptEncoding: string | undefined,
  asset: ConsoleAsset,
): "br" | "gzip" | undefined {
  if (!acceptEncoding) return undefined;
  const accepted = new Map<string, number>();
  for (const part of acceptEncoding.split(",")) {
    const [name = "", ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    accepted.set(name.trim(), q === undefined ? 1 : Number(q));
  }
  const ok = (name: string) => (accepted.get(name) ?? accepted.get("*") ?? 0) > 0;
  if (asset.br && ok("br")) return "br";
  if (asset.gzip && ok("gzip")) return "gzip";
  return undefined;
}
