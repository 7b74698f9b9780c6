// Bounded reads against a real local HTTP server: declared and undeclared (chunked) bodies
// over the cap are refused with NOVA_REPLY_TOO_LARGE naming the peer, the transfer is
// aborted, and a 200 MB reply does not grow the reader's heap by more than a few MB.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamBytes } from "../testing/huge-reply.js";
import { isNovaError, type NovaError } from "./errors.js";
import { readBoundedText, readJsonReply, readTextPrefix } from "./json-response.js";

const MiB = 1024 * 1024;

describe("bounded reply reads", () => {
  let server: Server;
  let base: string;
  let bytesSent = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const size = Number(url.searchParams.get("size") ?? "0");
      if (url.pathname === "/json") {
        res.writeHead(Number(url.searchParams.get("status") ?? "200"), {
          "content-type": "application/json",
        });
        res.end(url.searchParams.get("body") ?? "");
        return;
      }
      // /declared sends Content-Length; /chunked does not. Both stream `size` bytes with backpressure.
      res.writeHead(200, url.pathname === "/declared" ? { "content-length": String(size) } : {});
      streamBytes(res, size, "x", (n) => {
        bytesSent += n;
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const refusal = async (p: Promise<unknown>): Promise<NovaError> => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!isNovaError(err, "NOVA_REPLY_TOO_LARGE"))
      throw new Error(`expected NOVA_REPLY_TOO_LARGE, got ${err}`);
    return err;
  };

  it("reads a reply within the cap", async () => {
    const res = await fetch(`${base}/chunked?size=1000`);
    expect(await readBoundedText(res, { maxBytes: 1000 })).toBe("x".repeat(1000));
  });

  it("refuses a declared Content-Length over the cap before reading, naming the peer and the cap", async () => {
    const before = bytesSent;
    const res = await fetch(`${base}/declared?size=${200 * MiB}`);
    const err = await refusal(readBoundedText(res, { peer: "host h1", maxBytes: MiB }));
    expect(err.message).toMatch(/host h1/);
    expect(err.details).toMatchObject({ peer: "host h1", limitBytes: MiB, declaredBytes: 200 * MiB });
    // The transfer was dropped: the server did not get to send the 200 MB.
    await new Promise((r) => setTimeout(r, 200));
    expect(bytesSent - before).toBeLessThan(50 * MiB);
  });

  it("aborts an undeclared 200 MB body at the cap with bounded memory", async () => {
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const before = bytesSent;
    const res = await fetch(`${base}/chunked?size=${200 * MiB}`);
    const err = await refusal(
      readJsonReply(res, {
        fallbackCode: "NOVA_AGENT_ERROR",
        describe: (m) => `Host h2: ${m}`,
        details: { host: "h2" },
      }),
    );
    expect(err.message).toMatch(
      /^Host h2: The reply from http:\/\/127\.0\.0\.1:\d+ is larger than the 16777216 bytes accepted/,
    );
    expect(err.details).toMatchObject({ host: "h2", limitBytes: 16 * MiB });
    expect(err.details.receivedBytes as number).toBeGreaterThan(16 * MiB);
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    expect(heapGrowth).toBeLessThan(50 * MiB);
    await new Promise((r) => setTimeout(r, 200));
    expect(bytesSent - before).toBeLessThan(100 * MiB);
  });

  it("still turns an error reply into the sender's NovaError", async () => {
    const body = JSON.stringify({
      error: { code: "NOVA_NOT_FOUND", message: "no vm", details: { vm: "v" } },
    });
    const res = await fetch(`${base}/json?status=404&body=${encodeURIComponent(body)}`);
    const err = await readJsonReply(res, {
      fallbackCode: "NOVA_AGENT_ERROR",
      describe: (m) => `H: ${m}`,
    }).catch((e: NovaError) => e);
    expect(isNovaError(err, "NOVA_NOT_FOUND")).toBe(true);
    expect((err as NovaError).message).toBe("H: no vm");
  });

  it("keeps only a prefix of a long body, marking that it cut", async () => {
    const long = await readTextPrefix(await fetch(`${base}/chunked?size=${10 * MiB}`), 4096);
    expect(long).toEqual({ text: "x".repeat(4096), truncated: true });
    const exact = await readTextPrefix(await fetch(`${base}/chunked?size=4096`), 4096);
    expect(exact).toEqual({ text: "x".repeat(4096), truncated: false });
  });
});
