/**
 * Compression of the API's JSON replies (@fastify/compress): the overview and the VM list
 * read the whole fleet, about 490 bytes a VM, and JSON of that kind shrinks ~10×.
 *
 * Only GET replies are compressed, and never /v1/session's: a compressed reply that holds
 * a secret (a session's CSRF token, a new token's or password's one-time value) next to
 * text a third party chose can leak that secret through its size (BREACH). Those replies
 * are small; the large ones are lists. The event stream and /metrics are not JSON and are
 * left alone, and the console's files come compressed from the build already.
 */

import { constants } from "node:zlib";
import compress from "@fastify/compress";
import type { FastifyInstance } from "fastify";

/** Replies under this many bytes are sent as they are. */
export const COMPRESS_THRESHOLD_BYTES = 1024;

/** Installs compression on `app`; call before any route is registered. */
export async function installCompression(app: FastifyInstance): Promise<void> {
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (methods.some((m) => m !== "GET" && m !== "HEAD") || route.url.startsWith("/v1/session"))
      route.compress = false;
  });
  await app.register(compress, {
    global: true,
    encodings: ["br", "gzip"],
    threshold: COMPRESS_THRESHOLD_BYTES,
    customTypes: /^application\/json(;|$)/,
    // Brotli's default quality (11) costs ~50 ms for a 500 KB list; 5 keeps most of the gain.
    brotliOptions: { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } },
    zlibOptions: { level: 6 },
  });
}
