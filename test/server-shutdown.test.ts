// A server with event streams open (a console, a `--follow`) shuts down promptly: each
// stream is told why and ended, instead of holding the close forever.
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import pino from "pino";
import { afterAll, expect, it } from "vitest";
import { buildExecConfig } from "../src/exec/config.js";
import { withDeadline } from "../src/lib/wait.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { startServer } from "../src/server/server-process.js";

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it("ends open event streams when the server closes, and closes within seconds", async () => {
  dir = await mkdtemp("/tmp/nc-shutdown-");
  const server = await startServer({
    dataDir: path.join(dir, "server"),
    port: 0,
    execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
    logger: pino({ level: "silent" }),
    federationPort: 0,
    consoleDir: null,
  });
  const f = clusterFetch({ caPem: server.caPem }, { role: "server" });
  const readers = [];
  for (let i = 0; i < 2; i++) {
    const res = await f(`${server.url}/v1/events`, {
      headers: { authorization: `Bearer ${server.created.admin}` },
    });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    readers.push(res.body!.getReader());
  }
  const closed = server.close();
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
