// The API's JSON compression over a real server's TLS (PGlite): a large GET list goes
// brotli or gzip as the client accepts and decodes to the same JSON as the plain reply;
// a client that accepts neither gets it plain; replies that may hold a secret (any POST,
// /v1/session) and the event stream are never compressed.
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:https";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../src/server/server-process.js";

const PORT = 18680; // its federation listener takes 18681

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

describe("compression of the API's replies", () => {
  let dir: string;
  let server: RunningServer;

  const raw = (method: string, route: string, headers: Record<string, string> = {}, body?: string) =>
    new Promise<Raw>((resolve, reject) => {
      const req = request(
        `${server.url}${route}`,
        {
          method,
          ca: server.caPem,
          agent: false,
          headers: {
            authorization: `Bearer ${server.created.admin}`,
            ...(body ? { "content-type": "application/json" } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => {
            chunks.push(c);
            // The event stream never ends: its first bytes are enough.
            if (res.headers["content-type"]?.startsWith("text/event-stream")) res.destroy();
          });
          const done = () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          res.on("end", done);
          res.on("close", done);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-compress-");
    server = await startServer({
      dataDir: dir,
      port: PORT,
      execWorkers: false,
      logger: pino({ level: "silent" }),
    });
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends a large GET reply brotli or gzip as accepted, the same JSON as plain", async () => {
    const plain = await raw("GET", "/v1/openapi.json", { "accept-encoding": "identity" });
    expect(plain.status).toBe(200);
    expect(plain.headers["content-encoding"]).toBeUndefined();
    expect(plain.body.length).toBeGreaterThan(50_000);
    const json = JSON.parse(plain.body.toString("utf8")) as unknown;

    const br = await raw("GET", "/v1/openapi.json", { "accept-encoding": "gzip, br" });
    expect(br.headers["content-encoding"]).toBe("br");
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(br.body.length).toBeLessThan(plain.body.length / 4);
    expect(JSON.parse(brotliDecompressSync(br.body).toString("utf8"))).toEqual(json);

    const gz = await raw("GET", "/v1/openapi.json", { "accept-encoding": "gzip" });
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(JSON.parse(gunzipSync(gz.body).toString("utf8"))).toEqual(json);
  });

  it("never compresses a POST's reply, /v1/session's, or the event stream", async () => {
    const accept = { "accept-encoding": "br, gzip" };
    // A new token's reply holds its secret; pad it past the threshold with a long name.
    const made = await raw("POST", "/v1/tokens", accept, JSON.stringify({ name: `t-${"x".repeat(60)}` }));
    expect(made.status).toBe(201);
    expect(made.headers["content-encoding"]).toBeUndefined();
    expect(JSON.parse(made.body.toString("utf8"))).toHaveProperty("token");

    const session = await raw("GET", "/v1/session", accept);
    expect(session.headers["content-encoding"]).toBeUndefined();

    const events = await raw("GET", "/v1/events", accept);
    expect(events.headers["content-type"]).toMatch(/^text\/event-stream/);
    expect(events.headers["content-encoding"]).toBeUndefined();
  });
});
