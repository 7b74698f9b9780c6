/**
 * The image blobs this host offers to another cluster for one hand-off (docs/agent-protocol.md,
 * "Image copy between clusters"): which blobs, to whom (the destination cluster's CA, trusted
 * for the offer's sessions only), with which one-time token, until when. A session whose
 * hello names an offer (control.ts OFFER_HELLO_PREFIX) and proves its token gets the blobs
 * as HDE page streams (blob-pages.ts), one channel `blob:<digest>` per blob the puller
 * opens, deduplicated against the cache inventory it sent first (channel `inv`).
 *
 * Bounded: at most MAX_OFFERS offers, each of at most MAX_OFFER_BLOBS blobs, each living
 * at most MAX_OFFER_TTL_MS (the server withdraws it when the hand-off's prepare ended),
 * served to at most MAX_SESSIONS_PER_OFFER sessions at once, each blob once per session.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { BlobKind, ImageStore } from "../../compute/images/image-store.js";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { readInventory } from "../../dwcp/hde/receiver-mirror.js";
import { NovaError } from "../../lib/errors.js";
import type { ChannelRouter } from "../../migration/dwcp/channel-router.js";
import { sendBlobPages } from "./blob-pages.js";
import { CONTROL_CHANNELS } from "./control.js";

/** Offers held at once. */
export const MAX_OFFERS = 16;
/** Blobs in one offer: an image is a disk, a kernel and an initrd. */
export const MAX_OFFER_BLOBS = 3;
/** The longest an offer lives. */
export const MAX_OFFER_TTL_MS = 6 * 3600_000;
/**
 * Sessions serving one offer at once: a pull and its retry (the first may linger on this
 * side for a moment after the puller gave it up).
 */
export const MAX_SESSIONS_PER_OFFER = 2;
/** The label prefix of a blob's channel; the rest is its digest. */
export const BLOB_CHANNEL_PREFIX = "blob:";

/** One blob as offered: what the puller must receive, at most. */
export interface OfferedBlob {
  digest: string;
  kind: BlobKind;
  sizeBytes: number;
}

interface Offer {
  /** The sessions serving it: ended with it, so a puller cannot hold one past its offer. */
  sessions: Set<DwcpSession>;
  token: Buffer;
  peerCaPem: string;
  blobs: Map<string, OfferedBlob>;
  expiresAt: number;
}

/** One per agent. */
export class ImageOffers {
  private readonly offers = new Map<string, Offer>();

  constructor(private readonly images: ImageStore) {}

  /**
   * Offers `digests` (blobs of this host's store) under `id` to hosts of `peerCaPem`'s
   * cluster; idempotent (the same id keeps its token). NOVA_NOT_FOUND for a blob this
   * host lacks, NOVA_NO_CAPACITY beyond MAX_OFFERS.
   */
  async offer(
    id: string,
    digests: readonly string[],
    peerCaPem: string,
    ttlMs: number,
  ): Promise<{ token: string; blobs: OfferedBlob[] }> {
    this.expire();
    const existing = this.offers.get(id);
    if (existing) return { token: existing.token.toString("base64url"), blobs: [...existing.blobs.values()] };
    if (this.offers.size >= MAX_OFFERS)
      throw new NovaError("NOVA_NO_CAPACITY", `This host already offers ${MAX_OFFERS} images; retry later`, {
        details: { limit: MAX_OFFERS },
      });
    if (digests.length === 0 || digests.length > MAX_OFFER_BLOBS)
      throw new NovaError("NOVA_BAD_REQUEST", `An offer holds 1 to ${MAX_OFFER_BLOBS} blobs`);
    const stored = await this.images.list();
    const blobs = new Map<string, OfferedBlob>();
    for (const digest of digests) {
      const b = stored.find((s) => s.digest === digest);
      if (!b) throw new NovaError("NOVA_NOT_FOUND", `This host's image store has no blob ${digest}`);
      blobs.set(digest, { digest, kind: b.kind, sizeBytes: b.sizeBytes });
    }
    const offer: Offer = {
      sessions: new Set(),
      token: randomBytes(24),
      peerCaPem,
      blobs,
      expiresAt: Date.now() + Math.min(ttlMs, MAX_OFFER_TTL_MS),
    };
    this.offers.set(id, offer);
    return { token: offer.token.toString("base64url"), blobs: [...blobs.values()] };
  }

  /** Ends an offer and the sessions serving it; true when there was one. */
  withdraw(id: string): boolean {
    const offer = this.offers.get(id);
    if (!offer) return false;
    this.offers.delete(id);
    for (const session of offer.sessions)
      session.destroy(new NovaError("NOVA_DWCP_CLOSED", `image offer ${id} ended`));
    return true;
  }

  /** The peer CA of offer `id`, while it lives. */
  peerCaOf(id: string): string | undefined {
    this.expire();
    return this.offers.get(id)?.peerCaPem;
  }

  /** Ids of expired offers, dropped now (their peer CAs are to be untrusted). */
  expire(now = Date.now()): string[] {
    const gone = [...this.offers].filter(([, o]) => o.expiresAt <= now).map(([id]) => id);
    for (const id of gone) this.withdraw(id);
    return gone;
  }

  /** The offer `id` if `token` is its token. */
  check(id: string, token: Buffer): { peerCaPem: string } | undefined {
    const offer = this.offers.get(id);
    if (!offer || offer.expiresAt <= Date.now()) return undefined;
    if (token.length !== offer.token.length || !timingSafeEqual(token, offer.token)) return undefined;
    return { peerCaPem: offer.peerCaPem };
  }

  /**
   * Serves an accepted session of offer `id`: reads the puller's inventory, then sends each
   * blob whose channel it opens. A channel for a blob not offered, or already sent on
   * this session, is aborted.
   */
  async serve(id: string, session: DwcpSession, router: ChannelRouter): Promise<void> {
    const offer = this.offers.get(id);
    if (!offer) throw new NovaError("NOVA_NOT_FOUND", `no image offer ${id}`);
    if (offer.sessions.size >= MAX_SESSIONS_PER_OFFER)
      throw new NovaError(
        "NOVA_NO_CAPACITY",
        `image offer ${id} already has ${MAX_SESSIONS_PER_OFFER} sessions`,
      );
    offer.sessions.add(session);
    void session.closed.then(() => offer.sessions.delete(session));
    const mirror = await readInventory(await router.take(CONTROL_CHANNELS.inventory));
    const sends = new Map<string, Promise<unknown>>();
    router.onPrefix(BLOB_CHANNEL_PREFIX, (ch: Channel) => {
      const blob = offer.blobs.get(ch.label.slice(BLOB_CHANNEL_PREFIX.length));
      if (!blob || !this.offers.has(id) || sends.has(blob.digest)) {
        ch.abort("that blob is not offered, was sent already, or the offer ended");
        return true;
      }
      const send = sendBlobPages(ch, this.images.pathOf(blob.digest), blob.sizeBytes, mirror).catch(
        (err: unknown) => {
          if (ch.error === null) ch.abort(err instanceof Error ? err.message : String(err));
        },
      );
      sends.set(blob.digest, send);
      return true;
    });
    // The puller closes the session when it has what it came for.
    await session.closed.catch(() => undefined);
    await Promise.all(sends.values());
  }
}
