/**
 * Pulls an image another cluster's agent offers (image-offer.ts) into this host's image
 * store, one pull per hand-off, in the background: the server starts it and asks how it
 * goes with the same idempotent call (docs/agent-protocol.md, "Image copy between
 * clusters"), so no request waits for a multi-GB transfer.
 *
 * Each blob lands in a temporary file, bounded by its offered size (blob-pages.ts), and
 * enters the store only if its SHA-256 is the offered digest: any other content is refused
 * with NOVA_IMAGE_DIGEST_MISMATCH and nothing of it is kept. A pull that fails for any
 * reason keeps no partial file; asked again, it starts afresh (blobs already stored are
 * not fetched again). Temporary files of a pull cut short by an agent restart are removed
 * when the next pull starts.
 */
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { ImageStore } from "../../compute/images/image-store.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import type { PageCache } from "../../dwcp/hde/page-cache.js";
import { sendInventory } from "../../dwcp/hde/receiver-mirror.js";
import { describeError, isNovaError, NovaError } from "../../lib/errors.js";
import { receiveBlobPages } from "./blob-pages.js";
import { CONTROL_CHANNELS, OFFER_HELLO_PREFIX, sayHello } from "./control.js";
import { BLOB_CHANNEL_PREFIX, MAX_OFFER_BLOBS, type OfferedBlob } from "./image-offer.js";

/** Pulls remembered at once (running or finished); the oldest finished ones are forgotten first. */
export const MAX_PULLS = 32;

/** A pull whose session carried nothing for this long is ended (NOVA_TIMEOUT). */
export const PULL_IDLE_MS = 60_000;

/** What the server asks for: where the offer is, its token, and the blobs as offered. */
export interface PullRequest {
  id: string;
  endpoint: { host: string; port: number; name?: string };
  token: string;
  /** The source cluster's CA: the only one trusted for this pull's session. */
  peerCaPem: string;
  blobs: OfferedBlob[];
}

/** How a pull goes. */
export interface PullStatus {
  state: "running" | "done" | "failed";
  /** Failed: why, with a stable code. */
  code?: string;
  message?: string;
  /** Bytes of the blobs this pull fetched (blobs already here count nothing). */
  logicalBytes: number;
  /** HDE message bytes that crossed for them. */
  wireBytes: number;
  /** Pages that crossed as references to this host's page cache, or as zero pages. */
  pagesDeduplicated: number;
  pages: number;
}

interface Pull {
  status: PullStatus;
  done: Promise<void>;
}

export interface ImagePullsDeps {
  images: ImageStore;
  /** The page cache pulled pages dedupe against and enter. */
  cache: () => PageCache;
  /** Dials the offering agent, trusting only `peerCaPem`. */
  dial: (to: PullRequest["endpoint"], peerCaPem: string) => Promise<DwcpSession>;
  /** Where blobs land before they are verified. */
  tmpDir: string;
  onImagesChanged: () => void;
  /** Told of each blob stored: its bytes and the HDE bytes that crossed for it (the agent's metrics). */
  onBlobPulled?: (bytes: { logicalBytes: number; wireBytes: number }) => void;
}

/** One per agent. */
export class ImagePulls {
  private readonly pulls = new Map<string, Pull>();
  private cleaned = false;

  constructor(private readonly d: ImagePullsDeps) {}

  /**
   * Starts pull `req.id` unless it runs or succeeded; a failed one is reported once
   * more, then forgotten, so the next call starts it afresh.
   */
  start(req: PullRequest): PullStatus {
    const known = this.pulls.get(req.id);
    if (known) {
      if (known.status.state === "failed") this.pulls.delete(req.id);
      return { ...known.status };
    }
    if (req.blobs.length === 0 || req.blobs.length > MAX_OFFER_BLOBS)
      throw new NovaError("NOVA_BAD_REQUEST", `A pull fetches 1 to ${MAX_OFFER_BLOBS} blobs`);
    this.forgetFinished();
    if (this.pulls.size >= MAX_PULLS)
      throw new NovaError("NOVA_NO_CAPACITY", `This host already runs ${MAX_PULLS} image pulls`);
    const status: PullStatus = {
      state: "running",
      logicalBytes: 0,
      wireBytes: 0,
      pagesDeduplicated: 0,
      pages: 0,
    };
    const pull: Pull = {
      status,
      done: this.run(req, status).then(
        () => {
          status.state = "done";
        },
        (err: unknown) => {
          status.state = "failed";
          status.code = isNovaError(err) ? err.code : "NOVA_INTERNAL";
          status.message = describeError(err);
        },
      ),
    };
    this.pulls.set(req.id, pull);
    return { ...status };
  }

  /** Resolves when pull `id` ended (tests). */
  async settled(id: string): Promise<PullStatus | undefined> {
    const p = this.pulls.get(id);
    await p?.done;
    return p ? { ...p.status } : undefined;
  }

  private forgetFinished(): void {
    for (const [id, p] of this.pulls) {
      if (this.pulls.size < MAX_PULLS) return;
      if (p.status.state !== "running") this.pulls.delete(id);
    }
  }

  private async run(req: PullRequest, status: PullStatus): Promise<void> {
    const dir = path.join(this.d.tmpDir, "image-pulls");
    if (!this.cleaned) {
      this.cleaned = true;
      await rm(dir, { recursive: true, force: true });
    }
    await mkdir(dir, { recursive: true });
    const missing: OfferedBlob[] = [];
    for (const b of req.blobs) if (!(await this.d.images.has(b.digest))) missing.push(b);
    if (missing.length === 0) return;
    const session = await this.d.dial(req.endpoint, req.peerCaPem).catch((err: unknown) => {
      throw new NovaError("NOVA_HOST_UNREACHABLE", `the offering host is unreachable: ${describeError(err)}`);
    });
    // A source that stops sending (but keeps its connections up) would hold this pull
    // forever: a session silent for PULL_IDLE_MS is ended.
    let lastActive = Date.now();
    const alive = () => {
      lastActive = Date.now();
    };
    const watchdog = setInterval(() => {
      if (Date.now() - lastActive > PULL_IDLE_MS)
        session.destroy(
          new NovaError("NOVA_TIMEOUT", `the offering host sent nothing for ${PULL_IDLE_MS / 1000} s`),
        );
    }, 1000);
    watchdog.unref();
    try {
      const answer = await sayHello(session, {
        migrationId: `${OFFER_HELLO_PREFIX}${req.id}`,
        token: req.token,
      });
      if (!answer.ok)
        throw new NovaError(
          "NOVA_FORBIDDEN",
          `the offering host refused the pull: ${answer.error ?? "no reason"}`,
        );
      const cache = this.d.cache();
      await this.sendInventory(session, cache);
      for (const blob of missing) await this.pullOne(session, cache, blob, dir, status, alive);
    } finally {
      clearInterval(watchdog);
      session.destroy();
    }
  }

  private async sendInventory(session: DwcpSession, cache: PageCache): Promise<void> {
    const ch = session.openChannel(CONTROL_CHANNELS.inventory);
    await sendInventory(ch, cache);
    await ch.end();
  }

  private async pullOne(
    session: DwcpSession,
    cache: PageCache,
    blob: OfferedBlob,
    dir: string,
    status: PullStatus,
    alive: () => void,
  ): Promise<void> {
    const tmp = path.join(dir, `${blob.digest.slice(7, 23)}-${process.pid}-${Date.now()}`);
    try {
      const ch = session.openChannel(`${BLOB_CHANNEL_PREFIX}${blob.digest}`);
      const s = await receiveBlobPages(ch, tmp, blob.sizeBytes, cache, alive);
      try {
        await this.d.images.importFile(tmp, blob.kind, { expectedDigest: blob.digest });
      } catch (err) {
        // The store's refusal of other content names what it found (`actual`).
        if (isNovaError(err, "NOVA_UNPROCESSABLE") && err.details.actual !== undefined)
          throw new NovaError(
            "NOVA_IMAGE_DIGEST_MISMATCH",
            `the blob the offering host sent as ${blob.digest} has other content; it was refused and nothing was kept`,
            { details: { digest: blob.digest, actual: err.details.actual } },
          );
        throw err;
      }
      this.d.onImagesChanged();
      status.logicalBytes += blob.sizeBytes;
      status.wireBytes += s.wireBytes;
      status.pages += s.pages;
      status.pagesDeduplicated += s.ref + s.zero;
      this.d.onBlobPulled?.({ logicalBytes: blob.sizeBytes, wireBytes: s.wireBytes });
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
