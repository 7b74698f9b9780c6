/**
 * Fetches an image blob from another agent (a ticket URL the server obtained) into this
 * host's image store. The download lands in a temporary file, the store imports it only
 * if its SHA-256 is the digest the server asked for (a name or a size is never trusted);
 * a download with any other digest is refused with NOVA_UNPROCESSABLE, and neither the
 * store nor the temporary directory keeps anything of it.
 *
 * The download is bounded too: by the size its holder reported with the ticket when the
 * server passes it on (`sizeBytes`), else by MAX_BLOB_BYTES. A declared Content-Length
 * over the bound is refused before any byte is
 * written; an undeclared body is cut, and refused, as soon as it passes the bound
 * (NOVA_REPLY_TOO_LARGE), so a peer cannot fill this host's disk.
 */
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { AgentImagePullPost } from "../api/types/agent.js";
import type { ImageStore, StoredBlob } from "../compute/images/image-store.js";
import { describeError, NovaError } from "../lib/errors.js";
import { readTextPrefix } from "../lib/json-response.js";

/** The largest blob pulled when the server does not say the blob's size. */
export const MAX_BLOB_BYTES = 256 * 1024 ** 3;

/** Downloads, verifies and stores one blob; returns it (no download when already present). */
export async function pullBlob(
  images: ImageStore,
  tmpDir: string,
  req: AgentImagePullPost,
  /** How to reach the other host (its mutual TLS). */
  fetchBlob: (url: string, init?: RequestInit) => Promise<Response> = fetch,
  options: { maxBytes?: number } = {},
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
        `Failed downloading blob ${req.digest}: HTTP ${res.status} ${(await readTextPrefix(res, 4096)).text}`,
      );
    const limit = req.sizeBytes ?? options.maxBytes ?? MAX_BLOB_BYTES;
    const peer = new URL(req.url).origin;
    const tooLarge = (extra: Record<string, unknown>) =>
      new NovaError(
        "NOVA_REPLY_TOO_LARGE",
        `The download of blob ${req.digest} from ${peer} is larger than the ${limit} bytes expected; it was aborted and nothing was kept.`,
        { details: { peer, digest: req.digest, limitBytes: limit, ...extra } },
      );
    const declared = Number(res.headers.get("content-length") ?? Number.NaN);
    if (declared > limit) {
      await res.body.cancel().catch(() => {});
      throw tooLarge({ declaredBytes: declared });
    }
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      byteCap(limit, tooLarge),
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

/** Passes bytes through until more than `limit` went by, then fails the pipeline (which aborts the download). */
function byteCap(limit: number, tooLarge: (extra: Record<string, unknown>) => Error): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      seen += chunk.length;
      if (seen > limit) done(tooLarge({ receivedBytes: seen }));
      else done(null, chunk);
    },
  });
}
