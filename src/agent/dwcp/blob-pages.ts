/**
 * One image blob as an HDE page stream (docs/agent-protocol.md, "Image copy between
 * clusters"): the file cut into 4 KiB pages (the last one zero-padded), sent with
 * PageSender against the receiver's cache mirror, so pages the destination already holds
 * (another version of the image, zero pages, repeated pages) cross as references or not
 * at all; rebuilt with PageReceiver into a file of exactly the declared size.
 *
 * The receiver is bounded by the declared size: a page beyond it fails the stream
 * (NOVA_REPLY_TOO_LARGE) before it is written. Whether the bytes are the blob is not
 * decided here: the caller hashes the file against the digest before it enters the store.
 */
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import type { Channel } from "../../dwcp/amst/channel.js";
import { PAGE_SIZE, ZERO_PAGE } from "../../dwcp/hde/page.js";
import type { PageCache } from "../../dwcp/hde/page-cache.js";
import { PageReceiver } from "../../dwcp/hde/page-receiver.js";
import { PageSender, type PageSendStats } from "../../dwcp/hde/page-sender.js";
import type { ReceiverMirror } from "../../dwcp/hde/receiver-mirror.js";
import { NovaError } from "../../lib/errors.js";

/** Pages read from the file per read call. */
const READ_PAGES = 256;

/** How many pages a blob of `sizeBytes` takes. */
export function pageCount(sizeBytes: number): number {
  return Math.ceil(sizeBytes / PAGE_SIZE);
}

/** Reads page `n` of an open file of `sizeBytes` (zero-padded past its end). */
async function readPage(fh: FileHandle, sizeBytes: number, n: number): Promise<Buffer> {
  const page = Buffer.alloc(PAGE_SIZE);
  const len = Math.min(PAGE_SIZE, sizeBytes - n * PAGE_SIZE);
  if (len > 0) await fh.read(page, 0, len, n * PAGE_SIZE);
  return page;
}

/** Sends `file` (`sizeBytes` long) on `channel`; resolves once the receiver verified every page. */
export async function sendBlobPages(
  channel: Channel,
  file: string,
  sizeBytes: number,
  mirror: ReceiverMirror,
): Promise<PageSendStats> {
  const fh = await open(file, "r");
  try {
    const sender = new PageSender(channel, {
      source: { readPage: (n) => readPage(fh, sizeBytes, n) },
      mirror,
      // Image bytes have no earlier version on this stream to delta against.
      history: null,
    });
    await sender.start();
    const pages = pageCount(sizeBytes);
    const chunk = Buffer.alloc(READ_PAGES * PAGE_SIZE);
    for (let first = 0; first < pages; first += READ_PAGES) {
      chunk.fill(0);
      const want = Math.min(chunk.length, sizeBytes - first * PAGE_SIZE);
      const { bytesRead } = await fh.read(chunk, 0, want, first * PAGE_SIZE);
      if (bytesRead !== want)
        throw new NovaError("NOVA_INTERNAL", `blob ${file} is shorter than its ${sizeBytes} bytes`);
      const n = Math.min(READ_PAGES, pages - first);
      // PageSender keeps no reference to a page it encoded, so the chunk may be reused.
      for (let i = 0; i < n; i++)
        await sender.writePage(first + i, Buffer.from(chunk.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)));
    }
    return await sender.finish();
  } finally {
    await fh.close();
  }
}

/** What receiving one blob cost. */
export interface BlobReceiveStats {
  /** HDE message bytes read from the channel (before DWCP framing and TLS). */
  wireBytes: number;
  pages: number;
  /** Pages that crossed as references to this host's cache. */
  ref: number;
  zero: number;
  full: number;
}

/**
 * Receives a blob of `sizeBytes` from `channel` into `file` (created, mode 0600), its
 * pages deduplicated against `cache` (whose inventory the sender already holds).
 */
export async function receiveBlobPages(
  channel: Channel,
  file: string,
  sizeBytes: number,
  cache: PageCache,
  /** Called with each message's size as it arrives (a watchdog's sign of life). */
  onBytes: (bytes: number) => void = () => {},
): Promise<BlobReceiveStats> {
  const pages = pageCount(sizeBytes);
  let wireBytes = 0;
  const fh = await open(file, "w", 0o600);
  try {
    const count = (n: number) => {
      wireBytes += n;
      onBytes(n);
    };
    const receiver = new PageReceiver(countReads(channel, count), {
      cache,
      announce: false,
      sink: {
        write: async (pageNo, page) => {
          if (pageNo >= pages)
            throw new NovaError(
              "NOVA_REPLY_TOO_LARGE",
              `the peer sent page ${pageNo} of a blob declared ${sizeBytes} bytes (${pages} pages)`,
              { details: { limitBytes: sizeBytes } },
            );
          // Left as a hole: the truncate below gives the file its length.
          if (page === ZERO_PAGE) return;
          const len = Math.min(PAGE_SIZE, sizeBytes - pageNo * PAGE_SIZE);
          await fh.write(page, 0, len, pageNo * PAGE_SIZE);
        },
      },
    });
    const s = await receiver.run();
    await fh.truncate(sizeBytes);
    await fh.sync();
    return { wireBytes, pages: s.pages, ref: s.ref, zero: s.zero, full: s.full + s.delta };
  } finally {
    await fh.close();
  }
}

/** `channel`, with every message it reads counted. */
function countReads(channel: Channel, add: (bytes: number) => void): Channel {
  return new Proxy(channel, {
    get(target, prop) {
      if (prop === "read")
        return async () => {
          const m = await target.read();
          if (m) add(m.length);
          return m;
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
