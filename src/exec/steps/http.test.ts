import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { serveHugeReply } from "../../testing/huge-reply.js";
import { Masker } from "../masker.js";
import { httpStep } from "./http.js";
import type { StepContext } from "./step.js";

const SECRET = "hunter2-Sup3r$ecret!";
let server: Server;
let url: string;
let reply: { status: number; body: string };

beforeEach(async () => {
  server = createServer((_req, res) => {
    res.statusCode = reply.status;
    res.end(reply.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function ctx(): StepContext {
  return {
    signal: new AbortController().signal,
    services: {} as StepContext["services"],
    log: () => {},
    progress: () => {},
    checkpoint: {},
    saveCheckpoint: async () => {},
    resumed: false,
  };
}

describe("the http step's truncated bodies", () => {
  const masker = new Masker([SECRET]);

  it("keep no prefix of a secret cut at the result's body limit once masked", async () => {
    reply = { status: 200, body: `${"x".repeat(4096 - 7)}${SECRET}` };
    const result = await httpStep.run({ kind: "http", url, method: "GET" } as never, ctx());
    const masked = JSON.stringify(masker.maskValue(result));
    expect(masked).not.toContain("hunter2");
    expect(masked).toContain("x***");
  });

  it("keep no prefix of a secret cut in the error's message and details once masked", async () => {
    reply = { status: 400, body: `${"y".repeat(300 - 5)}${SECRET}${"z".repeat(1000)}` };
    const err = await httpStep
      .run({ kind: "http", url, method: "GET" } as never, ctx())
      .catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_EXEC_STEP_FAILED")).toBe(true);
    const e = err as Error & { details?: unknown };
    expect(masker.mask(e.message)).not.toContain("hunte");
    expect(JSON.stringify(masker.maskValue(e.details))).not.toContain("hunter2");
  });
});

describe("the http step's reads", () => {
  it("read only a prefix of a huge reply: the result is the marked cut and memory stays flat", async () => {
    // A streaming server (with backpressure), so only the step's own buffering is measured.
    const huge = await serveHugeReply({ fill: "q" });
    const hugeUrl = `${huge.url}/`;
    try {
      const heapBefore = process.memoryUsage().heapUsed;
      const result = (await httpStep.run({ kind: "http", url: hugeUrl, method: "GET" } as never, ctx())) as {
        body: string;
      };
      expect(result.body).toBe(`${"q".repeat(4096)}…[truncated]`);
      // 200 MB were on offer; the step read 16 KiB of them.
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(32 * 1024 * 1024);
    } finally {
      await huge.close();
    }
  });
});
