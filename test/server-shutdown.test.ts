// A server with event streams open (a console, a `--follow`) shuts down promptly: each
// stream is told why and ended, instead of holding the close forever; a client that holds
// a request open (its body never arrives) is cut after the shutdown's grace.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { connect } from "node:tls";
import pino from "pino";
import { afterAll, expect, it } from "vitest";
import { buildExecConfig } from "../src/exec/config.js";
import { withDeadline } from "../src/lib/wait.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

let dir: string | undefined;
/** Servers a case started and has not closed itself (it failed before): closed here. */
const open = new Set<RunningServer>();
afterAll(async () => {
  for (const s of open) await s.close().catch(() => {});
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Closes `server` as the case's own act (no longer left to afterAll). */
function close(server: RunningServer): Promise<void> {
  open.delete(server);
  return server.close();
}

async function start(name: string): Promise<RunningServer> {
  dir ??= await mkdtemp("/tmp/nc-shutdown-");
  const server = await startServer({
    dataDir: path.join(dir, name),
    port: 0,
    execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
    logger: pino({ level: "silent" }),
    federationPort: 0,
    consoleDir: null,
  });
  open.add(server);
  return server;
}

it("ends open event streams when the server closes, and closes within seconds", async () => {
  const server = await start("streams");
  const f = clusterFetch({ caPem: server.caPem }, { role: "server" });
  const readers = [];
  for (let i = 0; i < 2; i++) {
    const res = await f(`${server.url}/v1/events`, {
      headers: { authorization: `Bearer ${server.created.admin}` },
    });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    readers.push(res.body!.getReader());
  }
  const closed = close(server);
  const decoder = new TextDecoder();
  for (const reader of readers) {
    let text = "";
    for (;;) {
      const chunk = await withDeadline(reader.read(), 10_000, () => new Error("the stream did not end"));
      if (chunk.done) break;
      text += decoder.decode(chunk.value);
    }
    expect(text).toContain(": closed: the server is shutting down");
  }
  await withDeadline(closed, 10_000, () => new Error("the server did not close within 10 s"));
});

it("cuts a request still in flight after the grace instead of waiting for the client", async () => {
  const server = await start("inflight");
  const url = new URL(server.url);
  const socket = connect({
    host: url.hostname,
    port: Number(url.port),
    ca: server.caPem,
    servername: "localhost",
  });
  socket.on("error", () => {});
  await once(socket, "secureConnect");
  // Headers and a promise of 100 bytes of body, of which one arrives: the request stays in
  // flight until Node's request timeout (30 s), longer than a shutdown may take. The
  // server's 100 Continue says it has the request.
  const continued = once(socket, "data");
  socket.write(
    `POST /v1/vms HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${server.created.admin}\r\n` +
      "Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
  );
  expect(String((await withDeadline(continued, 5000, () => new Error("no 100 Continue")))[0])).toContain(
    "100 Continue",
  );
  socket.write("{");
  const cut = once(socket, "close");
  const started = Date.now();
  await withDeadline(close(server), 15_000, () => new Error("the server waited for the client's request"));
  await withDeadline(cut, 5000, () => new Error("the connection was left open"));
  // Not closed at once: the grace lets requests in flight finish.
  expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
});
