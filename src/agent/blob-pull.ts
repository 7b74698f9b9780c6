/**
 * Fetches an image blob from another agent (a ticket URL the server obtained) into this
 * host's image store. The download lands in a temporary file, the store imports it only
 * if its SHA-256 is the digest the server asked for (a name or a size is never trusted);
 * a download with any other digest is refused with NOVA_UNPROCESSABLE, and neither the
 * store nor the temporary directory keeps anything of it.
 */
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { AgentImagePullPost } from "../api/types/agent.js";
import type { ImageStore, StoredBlob } from "../compute/images/image-store.js";
import { describeError, NovaError } from "../lib/errors.js";

/** Downloads, verifies and stores one blob; returns it (no download when already present). */
export async function pullBlob(
  images: ImageStore,
  tmpDir: string,
  req: AgentImagePullPost,
  /** How to reach the other host (its mutual TLS). */
  fetchBlob: (url: string, init?: RequestInit) => Promise<Response> = fetch,
): Promise<StoredBlob> {
  if (await images.has(req.digest)) {
    const existing = (await images.list()).find((b) => b.digest === req.digest);
    if (existing) return existing;
  }
  await mkdir(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `pull-${req.digest.slice(7, 23)}-${process.pid}-${Date.now()}`);
  try {
    let res: Response;
    try {
      res = await fetchBlob(req.url, { signal: AbortSignal.timeout(30 * 60_000) });
    } catch (err) {
      throw new NovaError(
        "NOVA_HOST_UNREACHABLE",
        `Failed downloading blob ${req.digest}: ${describeError(err)}`,
      );
    }
    if (!res.ok || !res.body)
      throw new NovaError(
        "NOVA_AGENT_ERROR",
        `Failed downloading blob ${req.digest}: HTTP ${res.status} ${await res.text()}`,
      );
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      createWriteStream(tmp, { mode: 0o600 }),
    );
    // The store hashes the download and refuses any other digest before writing anything,
    // so a wrong blob never enters it; the download itself is removed below.
    const blob = await images.importFile(tmp, req.kind, { expectedDigest: req.digest });
    return blob;
  } finally {
    await rm(tmp, { force: true });
  }
}
