// The bounds on a real node:http server (the agent's API applies exactly this): a silent
// connection, a header trickle and a slow body are each cut off within their timeout.
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyHttpServerLimits, HTTP_SERVER_LIMITS } from "./http-limits.js";
import { waitFor } from "./wait.js";

describe("applyHttpServerLimits", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end("ok"));
    });
    applyHttpServerLimits(server, { headersTimeoutMs: 600, requestTimeoutMs: 1000, checkIntervalMs: 100 });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const open = (): Promise<{ socket: Socket; closed: Promise<{ ms: number; text: string }> }> =>
    new Promise((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        const t0 = Date.now();
        let text = "";
        socket.on("data", (d: Buffer) => {
          text += d.toString();
        });
        resolve({
          socket,
          closed: new Promise((r) => socket.on("close", () => r({ ms: Date.now() - t0, text }))),
        });
      });
    });

  it("has defaults that cut a client off within seconds", () => {
    expect(HTTP_SERVER_LIMITS.headersTimeoutMs).toBeLessThanOrEqual(HTTP_SERVER_LIMITS.requestTimeoutMs);
    expect(HTTP_SERVER_LIMITS.requestTimeoutMs).toBeLessThanOrEqual(60_000);
    expect(server.maxConnections).toBe(HTTP_SERVER_LIMITS.maxConnections);
  });

  it("closes silent, header-trickling and slow-body connections with 408 within their bounds", async () => {
    const silent = await open();
    const trickle = await open();
    const slow = await open();
    trickle.socket.write("GET / HTTP/1.1\r\n");
    slow.socket.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    const drip = setInterval(() => {
      if (trickle.socket.writable) trickle.socket.write("X-Pad: y\r\n");
      if (slow.socket.writable) slow.socket.write("a");
    }, 50);
    const [s, t, b] = await Promise.all([silent.closed, trickle.closed, slow.closed]);
    clearInterval(drip);
    expect(s.ms).toBeLessThan(600 + 400);
    expect(t.ms).toBeLessThan(600 + 400);
    expect(t.text).toMatch(/^HTTP\/1\.1 408/);
    expect(b.ms).toBeGreaterThanOrEqual(900);
    expect(b.ms).toBeLessThan(1000 + 400);
    expect(b.text).toMatch(/^HTTP\/1\.1 408/);
  });

  it("closes connections from one address beyond its cap at once, and counts them down as they close", async () => {
    const capped = createServer((_req, res) => res.end("ok"));
    applyHttpServerLimits(capped, { maxConnectionsPerAddress: 3 });
    await new Promise<void>((r) => capped.listen(0, "127.0.0.1", r));
    const p = (capped.address() as AddressInfo).port;
    const dial = () =>
      new Promise<{ socket: Socket; closed: Promise<void> }>((resolve) => {
        const socket = connect(p, "127.0.0.1", () =>
          resolve({ socket, closed: new Promise((r) => socket.on("close", () => r())) }),
        );
      });
    try {
      const held = [await dial(), await dial(), await dial()];
      const extra = await dial();
      await extra.closed; // destroyed by the server as it arrived
      held[0]!.socket.destroy();
      await held[0]!.closed;
      // The server sees the close a moment after the client does.
      await waitFor(
        () =>
          new Promise<boolean | undefined>((r) => capped.getConnections((_e, n) => r(n === 2 || undefined))),
        { timeoutMs: 5000, what: "the server to count the closed connection" },
      );
      // One slot free again: a new connection stays open long enough to be answered.
      const again = await dial();
      const reply = await new Promise<string>((resolve) => {
        again.socket.on("data", (d: Buffer) => resolve(d.toString()));
        again.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      });
      expect(reply).toMatch(/^HTTP\/1\.1 200/);
      for (const h of [...held, again]) h.socket.destroy();
    } finally {
      capped.closeAllConnections();
      await new Promise((r) => capped.close(r));
    }
  });
});
