/**
 * Runs the `novacron` command against a stub API server (plain HTTP on 127.0.0.1) and
 * captures what it prints, for tests of commands end to end: argv → request → output.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { vi } from "vitest";
import { runCli } from "./main.js";

/** A request the stub received. */
export interface StubRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: unknown;
}

/** The stub's answer to "METHOD /path": a status and a JSON body. */
export type StubRoutes = Record<string, { status?: number; body: unknown }>;

/** What one run of the command did. */
export interface StubRun {
  code: number;
  stdout: string;
  stderr: string;
  requests: StubRequest[];
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/**
 * Runs `novacron ...args --server <stub> --token test-token`; a route not in `routes`
 * answers 404 NOVA_NOT_FOUND. No config file is read (NOVACRON_CONFIG points nowhere).
 */
export async function runAgainstStub(args: string[], routes: StubRoutes): Promise<StubRun> {
  const requests: StubRequest[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      requests.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        body,
      });
      const route = routes[`${req.method} ${req.url}`];
      res.writeHead(route?.status ?? (route ? 200 : 404), { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          route
            ? route.body
            : { error: { code: "NOVA_NOT_FOUND", message: `no stub for ${req.method} ${req.url}` } },
        ),
      );
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const out: string[] = [];
  const err: string[] = [];
  const outSpy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  const errSpy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  });
  vi.stubEnv("NOVACRON_CONFIG", "/nonexistent/novacron-test/config.json");
  vi.stubEnv("NOVACRON_CA_FILE", "");
  try {
    const code = await runCli([
      "node",
      "novacron",
      ...args,
      "--server",
      `http://127.0.0.1:${port}`,
      "--token",
      "test-token",
    ]);
    return { code, stdout: out.join(""), stderr: err.join(""), requests };
  } finally {
    outSpy.mockRestore();
    errSpy.mockRestore();
    vi.unstubAllEnvs();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
