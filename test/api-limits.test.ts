// The API's resource bounds against a real server on PGlite over real connections: slow,
// trickling and silent clients are cut off within the timeouts; event streams over the
// per-token and total caps get 429; a revoked token's open stream ends (at once through
// the API, within a heartbeat when revoked elsewhere); rate limits answer 429 with
// Retry-After in the error envelope; an oversized agent reply is a typed error with
// bounded memory. Limits are set low through $NOVACRON_API_LIMITS so this runs in seconds.
//
// Every connection goes through `api` below (URL, fetch, TLS socket, request from another
// loopback address), all over the server's HTTPS with its cluster CA trusted.

import { mkdtemp, rm } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { type Socket, connect as tcpConnect } from "node:net";
import { connect } from "node:tls";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentConnector } from "../src/cluster/agent-client.js";
import { revokeToken } from "../src/cluster/store/tokens.js";
import { buildExecConfig } from "../src/exec/config.js";
import { isNovaError, type NovaError } from "../src/lib/errors.js";
import { TLS_HANDSHAKE_TIMEOUT_MS } from "../src/lib/http-limits.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { serveHugeReply } from "../src/testing/huge-reply.js";

interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}

const LIMITS = {
  headersTimeoutMs: 1000,
  requestTimeoutMs: 2000,
  keepAliveTimeoutMs: 1000,
  checkIntervalMs: 200,
  tokenRate: { perSecond: 5, burst: 60 },
  // A slow refill: 500 TLS requests took 2.5-3.5 s on this machine, and at 50/s the
  // bucket refilled faster than the 100 over its burst arrived (no 429 at all).
  addressRate: { perSecond: 5, burst: 400 },
  authFailureRate: { perSecond: 0.1, burst: 5 },
  sseStreamsPerToken: 2,
  sseStreamsTotal: 4,
  sseHeartbeatMs: 1500,
  sseBufferBytes: 256 * 1024,
  // The address-rate test opens hundreds of connections from one address at once; the
  // per-address connection cap has its own test (src/lib/http-limits.test.ts).
  maxConnectionsPerAddress: 10_000,
};

let server: RunningServer;

/** The one place that knows how to reach the server. */
const api = {
  url: (route: string) => `${server.url}${route}`,
  fetch: (route: string, token: string, init: RequestInit = {}) =>
    clusterFetch({ caPem: server.caPem }, { role: "server" })(api.url(route), {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) },
    }),
  /** A TLS connection to the server, for clients that misbehave below HTTP. */
  socket: (): Promise<Socket> => {
    const { hostname, port } = new URL(server.url);
    return new Promise((resolve, reject) => {
      const s = connect(
        { port: Number(port), host: hostname, ca: server.caPem, checkServerIdentity: () => undefined },
        () => resolve(s),
      );
      s.once("error", reject);
    });
  },
  /** A plain TCP connection that never starts TLS. */
  tcp: (): Promise<Socket> => {
    const { hostname, port } = new URL(server.url);
    return new Promise((resolve, reject) => {
      const s = tcpConnect(Number(port), hostname, () => resolve(s));
      s.once("error", reject);
    });
  },
  /** GET from another loopback address (127.0.0.x), which has its own per-address budget. */
  getFrom: (
    localAddress: string,
    route: string,
    token?: string,
  ): Promise<{ status: number; headers: Record<string, unknown>; body: string }> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        api.url(route),
        {
          localAddress,
          headers: token ? { authorization: `Bearer ${token}` } : {},
          agent: false,
          ca: server.caPem,
          checkServerIdentity: () => undefined,
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on("error", reject);
      req.end();
    }),
};

/** Resolves with how long the socket stayed open and what the server sent, once it closes. */
function whenClosed(s: Socket): Promise<{ ms: number; text: string }> {
  const t0 = Date.now();
  let text = "";
  s.on("data", (d: Buffer) => {
    text += d.toString();
  });
  return new Promise((resolve) => s.on("close", () => resolve({ ms: Date.now() - t0, text })));
}

describe("API limits", () => {
  let dir: string;
  let admin: string;

  const newToken = async (name: string): Promise<{ token: string; id: string }> => {
    const res = await api.fetch("/v1/tokens", admin, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { token: string; id: string };
  };
  /** Opens an event stream; `next` reads the next chunk or reports the end. */
  const openStream = async (token: string) => {
    const controller = new AbortController();
    const res = await api.fetch("/v1/events", token, { signal: controller.signal });
    const reader = res.status === 200 ? res.body!.getReader() : undefined;
    return {
      res,
      close: () => controller.abort(),
      /** Resolves true when the stream ends within `ms`, false when it is still open. */
      endsWithin: async (ms: number): Promise<boolean> => {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline) {
          const r = await Promise.race([
            reader!.read().catch(() => ({ done: true })),
            new Promise<null>((resolve) => setTimeout(() => resolve(null), deadline - Date.now())),
          ]);
          if (r === null) return false;
          if (r.done) return true;
        }
        return false;
      },
    };
  };
  const expectRateLimited = async (res: Response, limit: string) => {
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as ApiError;
    expect(body.error.code).toBe("NOVA_RATE_LIMITED");
    expect(body.error.details).toMatchObject({ limit, retryAfterSeconds: retryAfter });
  };

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-api-limits-");
    process.env.NOVACRON_API_LIMITS = JSON.stringify(LIMITS);
    server = await startServer({
      dataDir: dir,
      port: 0,
      execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
      logger: pino({ level: "silent" }),
    });
    delete process.env.NOVACRON_API_LIMITS;
    admin = server.created.admin!;
  });
  afterAll(async () => {
    server?.app.server.closeAllConnections();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("cuts off a slow body (one byte every 100 ms) with 408 within the request timeout", async () => {
    const s = await api.socket();
    const closed = whenClosed(s);
    s.write(
      `POST /v1/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`,
    );
    const drip = setInterval(() => s.writable && s.write(" "), 100);
    const { ms, text } = await closed;
    clearInterval(drip);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.requestTimeoutMs - 100);
    expect(ms).toBeLessThan(LIMITS.requestTimeoutMs + 1500);
  });

  it("answers an unauthenticated slow body with 401 before reading it, and never keeps it past the request timeout", async () => {
    const s = await api.socket();
    const closed = whenClosed(s);
    const t0 = Date.now();
    let firstAnswerMs = -1;
    s.once("data", () => {
      firstAnswerMs = Date.now() - t0;
    });
    s.write(
      "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    );
    const drip = setInterval(() => s.writable && s.write(" "), 100);
    const { ms, text } = await closed;
    clearInterval(drip);
    expect(text).toMatch(/^HTTP\/1\.1 401/);
    expect(firstAnswerMs).toBeLessThan(LIMITS.requestTimeoutMs);
    expect(ms).toBeLessThan(LIMITS.requestTimeoutMs + 1500);
  });

  it("closes a connection that never starts TLS within the handshake timeout", async () => {
    const s = await api.tcp();
    const { ms, text } = await whenClosed(s);
    expect(text).toBe("");
    expect(ms).toBeLessThan(TLS_HANDSHAKE_TIMEOUT_MS + 1500);
  });

  it("cuts off a header trickle and a silent connection within the header timeout", async () => {
    const trickle = await api.socket();
    const silent = await api.socket();
    const closedTrickle = whenClosed(trickle);
    const closedSilent = whenClosed(silent);
    trickle.write("GET /healthz HTTP/1.1\r\n");
    const drip = setInterval(() => trickle.writable && trickle.write("X-Pad: y\r\n"), 100);
    const [t, q] = await Promise.all([closedTrickle, closedSilent]);
    clearInterval(drip);
    for (const c of [t, q]) {
      expect(c.ms).toBeLessThan(LIMITS.headersTimeoutMs + 1500);
    }
    expect(t.text).toMatch(/^HTTP\/1\.1 408/);
  });

  it("refuses event streams over the per-token and the total cap with 429, and frees slots as streams close", async () => {
    const other = await newToken("sse-other");
    const third = await newToken("sse-third");
    const a = [await openStream(admin), await openStream(admin)];
    for (const s of a) expect(s.res.status).toBe(200);
    await expectRateLimited((await openStream(admin)).res, "sse-per-token");
    const b = [await openStream(other.token), await openStream(other.token)];
    for (const s of b) expect(s.res.status).toBe(200);
    await expectRateLimited((await openStream(third.token)).res, "sse-total");
    // A closed stream frees its slot.
    a[0]!.close();
    const deadline = Date.now() + 3000;
    let again = await openStream(third.token);
    while (again.res.status === 429 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      again = await openStream(third.token);
    }
    expect(again.res.status).toBe(200);
    for (const s of [...a, ...b, again]) s.close();
  });

  it("ends a revoked token's open stream at once, and within a heartbeat when revoked behind the API's back", async () => {
    const viaApi = await newToken("revoked-via-api");
    const behind = await newToken("revoked-in-db");
    // Wait for the previous test's streams to be released.
    const s1 = await openStreamWhenFree(viaApi.token);
    const s2 = await openStreamWhenFree(behind.token);
    expect(await s1.endsWithin(200)).toBe(false);

    const t0 = Date.now();
    const del = await api.fetch(`/v1/tokens/${viaApi.id}`, admin, { method: "DELETE" });
    expect(del.status).toBe(204);
    // Well before the next heartbeat could have noticed.
    expect(await s1.endsWithin(500)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(LIMITS.sseHeartbeatMs / 2);

    await revokeToken(server.store.db, behind.id);
    expect(await s2.endsWithin(LIMITS.sseHeartbeatMs * 3)).toBe(true);
    // And the revoked token cannot open a new one.
    expect((await openStream(viaApi.token)).res.status).toBe(401);
  });

  async function openStreamWhenFree(token: string) {
    const deadline = Date.now() + 3000;
    for (;;) {
      const s = await openStream(token);
      if (s.res.status === 200 || Date.now() > deadline) {
        expect(s.res.status).toBe(200);
        return s;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it("drops a stream whose client does not read once its unsent bytes pass the bound, freeing its slot", async () => {
    const lazy = await newToken("lazy-reader");
    const raw = async () => {
      const s = await api.socket();
      s.pause(); // never reads
      s.write(`GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${lazy.token}\r\n\r\n`);
      return s;
    };
    const streams = [await raw(), await raw()];
    const deadline = Date.now() + 3000;
    let third = await openStream(lazy.token);
    while (third.res.status !== 429 && Date.now() < deadline) {
      // The raw streams may not have been accepted yet.
      third.close();
      await new Promise((r) => setTimeout(r, 50));
      third = await openStream(lazy.token);
    }
    expect(third.res.status).toBe(429);
    // 32 MB of live events: far over the bound plus what the sockets' buffers take.
    const big = "z".repeat(64 * 1024);
    for (let i = 0; i < 512; i++)
      server.store.bus.publish([
        {
          id: 0,
          at: new Date().toISOString(),
          type: "test.flood",
          resourceType: "test",
          resourceId: null,
          data: { big },
        },
      ]);
    const again = await openStreamWhenFree(lazy.token);
    expect(again.res.status).toBe(200);
    again.close();
    for (const s of streams) s.destroy();
  });

  it("answers a token over its rate with 429, Retry-After and the envelope", async () => {
    const busy = await newToken("busy");
    const replies = await Promise.all(
      Array.from({ length: LIMITS.tokenRate.burst + 20 }, () => api.fetch("/v1/hosts", busy.token)),
    );
    const limited = replies.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(10);
    expect(replies.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(LIMITS.tokenRate.burst - 5);
    await expectRateLimited(limited[0]!, "token");
    // Another token is not affected.
    expect((await api.fetch("/v1/hosts", admin)).status).toBe(200);
  });

  it("answers an address over its rate with 429 (other addresses unaffected)", async () => {
    const total = LIMITS.addressRate.burst + 100;
    const t0 = Date.now();
    const replies = await Promise.all(
      Array.from({ length: total }, () => api.getFrom("127.0.0.3", "/healthz")),
    );
    const refilled = Math.ceil((LIMITS.addressRate.perSecond * (Date.now() - t0)) / 1000);
    const limited = replies.filter((r) => r.status === 429);
    // TLS handshakes take time, and the bucket refills meanwhile: all but burst + refill are refused.
    expect(limited.length).toBeGreaterThanOrEqual(
      Math.max(1, total - LIMITS.addressRate.burst - refilled - 5),
    );
    expect(Number(limited[0]!.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect((JSON.parse(limited[0]!.body) as ApiError).error).toMatchObject({
      code: "NOVA_RATE_LIMITED",
      details: { limit: "address" },
    });
    expect((await api.getFrom("127.0.0.4", "/healthz")).status).toBe(200);
  });

  it("refuses an address after its failed authentications, even with a valid token, before any lookup", async () => {
    const from = "127.0.0.5";
    const wrong = "nva_wrong";
    for (let i = 0; i < LIMITS.authFailureRate.burst; i++)
      expect((await api.getFrom(from, "/v1/hosts", wrong)).status).toBe(401);
    const blocked = await api.getFrom(from, "/v1/hosts", wrong);
    expect(blocked.status).toBe(429);
    expect((JSON.parse(blocked.body) as ApiError).error).toMatchObject({
      code: "NOVA_RATE_LIMITED",
      details: { limit: "auth-failures" },
    });
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect((await api.getFrom(from, "/v1/hosts", admin)).status).toBe(429);
    // Other addresses still authenticate.
    expect((await api.getFrom("127.0.0.6", "/v1/hosts", admin)).status).toBe(200);
  });
});

describe("reading an agent's reply", () => {
  let fake: Awaited<ReturnType<typeof serveHugeReply>>;
  let agentUrl: string;
  beforeAll(async () => {
    // A "host" that answers every call with 200 MB of JSON-ish bytes, streamed with backpressure.
    fake = await serveHugeReply({ fill: "7", headers: { "content-type": "application/json" } });
    agentUrl = fake.url;
  });
  afterAll(async () => fake?.close());

  it("refuses a 200 MB reply with NOVA_REPLY_TOO_LARGE naming the host, without growing the heap by it", async () => {
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    const client = new AgentConnector(null).client({ id: "x", name: "big-mouth", agentUrl });
    const err = await client.consoleTail("00000000-0000-0000-0000-000000000000", 10).catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_REPLY_TOO_LARGE")).toBe(true);
    expect((err as NovaError).message).toMatch(/^Host big-mouth: .* larger than the 16777216 bytes/);
    expect((err as NovaError).details).toMatchObject({ host: "big-mouth", limitBytes: 16 * 1024 * 1024 });
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(50 * 1024 * 1024);
  });
});
