/**
 * An HTTP server that answers with a huge body, streamed with backpressure, for the tests
 * that show a reader stays bounded: only the reader's own buffering is measured, and the
 * stream stops when the reader goes away.
 *
 * Dev-only test tooling (src/testing/): only tests, benches and src/demo import it.
 */
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Writes `size` bytes of `fill` to `res` as the peer reads them; stops when it closes. */
export function streamBytes(
  res: ServerResponse,
  size: number,
  fill: string,
  onSent?: (bytes: number) => void,
): void {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let left = size;
  const pump = () => {
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      onSent?.(piece.length);
      if (!res.write(piece)) return void res.once("drain", pump);
    }
    res.end();
  };
  res.on("close", () => {
    left = 0;
  });
  pump();
}

/** A local server answering every request with `bytes` of `fill` (200 MB by default). */
export async function serveHugeReply(
  options: { bytes?: number; fill?: string; headers?: Record<string, string> } = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, options.headers ?? {});
    streamBytes(res, options.bytes ?? 3200 * 64 * 1024, options.fill ?? "x");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
