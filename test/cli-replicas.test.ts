/**
 * The `novacron` command (built, as a separate process) given several replicas' URLs,
 * against a real server over TLS: it logs in and works through a URL where nothing
 * listens and through one whose certificate is from another cluster's CA; a write reaches
 * the server once; a connection cut after the request was sent is not repeated elsewhere;
 * and with no replica reachable it says why for each, with its code and exit code.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/agent/free-port.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { runBuiltCli } from "./helpers/cli-process.js";

/** A port nothing listens on (just freed). */
const deadPort = () => freePort("127.0.0.1");

describe("novacron with several replicas' URLs against a real server", () => {
  let dir: string;
  let server: RunningServer;
  /** Another cluster's server: its certificate is not from the pinned CA. */
  let foreign: RunningServer;
  /** Accepts a request, then cuts the connection: it may have taken it. */
  let cutter: Server;
  let cutterRequests = 0;
  let config: string;
  let dead: string;
  let cut: string;

  /** Runs the CLI with `stdin` piped in; no server or token from the environment, only the config file. */
  const cli = (args: string[], stdin = "") => runBuiltCli(config, args, stdin);
  /** The cluster's CA, for URLs that were not logged in to. */
  const caFile = () => ["--ca-file", path.join(dir, "server", "pki", "ca.crt")];
  const users = async () => {
    const list = await cli(["user", "list", "--json", "--server", server.url]);
    expect(list.code, list.stderr).toBe(0);
    return (JSON.parse(list.stdout) as { username: string }[]).map((u) => u.username);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-cli-replicas-"));
    config = path.join(dir, "cli.json");
    const quiet = { port: 0, execWorkers: false, logger: pino({ level: "silent" }) };
    server = await startServer({ dataDir: path.join(dir, "server"), ...quiet });
    foreign = await startServer({ dataDir: path.join(dir, "foreign"), ...quiet });
    dead = `https://127.0.0.1:${await deadPort()}`;
    cutter = createServer((socket) =>
      socket.once("data", () => {
        cutterRequests++;
        socket.destroy();
      }),
    );
    await new Promise<void>((resolve) => cutter.listen(0, "127.0.0.1", resolve));
    cut = `http://127.0.0.1:${(cutter.address() as { port: number }).port}`;
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    await foreign?.close();
    cutter?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("logs in past a replica that is down, saves the list, and works through it", async () => {
    const login = await cli([
      "login",
      "--server",
      `${dead}/, ${server.url}`,
      "--token-file",
      server.adminTokenPath,
      "--fingerprint",
      server.caFingerprint,
    ]);
    expect(login.code, login.stderr).toBe(0);
    expect((JSON.parse(await readFile(config, "utf8")) as { server: string }).server).toBe(
      `${dead},${server.url}`,
    );
    const hosts = await cli(["host", "list", "--json"]);
    expect(hosts.code, hosts.stderr).toBe(0);
    expect(JSON.parse(hosts.stdout)).toEqual([]);
    // A write goes through once.
    const created = await cli(
      ["user", "create", "carol", "--role", "viewer", "--password-stdin"],
      "carol's passphrase\n",
    );
    expect(created.code, created.stderr).toBe(0);
    expect(await users()).toEqual(["carol"]);
  });

  it("passes over a replica whose certificate is not from the pinned CA", async () => {
    expect(foreign.caFingerprint).not.toBe(server.caFingerprint);
    // The foreign URL was never logged in to: the cluster's CA file is given instead.
    const hosts = await cli([
      "host",
      "list",
      "--json",
      "--server",
      `${foreign.url},${server.url}`,
      ...caFile(),
    ]);
    expect(hosts.code, hosts.stderr).toBe(0);
    expect(JSON.parse(hosts.stdout)).toEqual([]);
  });

  it("does not repeat a request elsewhere once a replica may have taken it", async () => {
    const created = await cli(
      [
        "user",
        "create",
        "dave",
        "--role",
        "viewer",
        "--password-stdin",
        "--server",
        `${cut},${server.url}`,
        ...caFile(),
      ],
      "dave's passphrase\n",
    );
    expect(created.code).toBe(3);
    expect(created.stderr).toContain("[NOVA_HOST_UNREACHABLE]");
    expect(created.stderr).toContain(
      `The connection to the NovaCron server at ${cut} failed during POST /v1/users`,
    );
    expect(created.stderr).toContain("check before repeating it");
    expect(cutterRequests).toBe(1);
    expect(await users()).toEqual(["carol"]);
  });

  it("says why for each replica when none can be reached", async () => {
    const other = `https://127.0.0.1:${await deadPort()}`;
    const hosts = await cli(["host", "list", "--server", `${dead},${other}`, ...caFile()]);
    expect(hosts.code).toBe(3);
    expect(hosts.stderr).toContain(
      "novacron: Cannot reach any of the NovaCron server's 2 replicas (--server): ",
    );
    expect(hosts.stderr).toContain("[NOVA_HOST_UNREACHABLE]");
    expect(hosts.stderr).toContain(`${dead}: `);
    expect(hosts.stderr).toContain(`${other}: `);
    expect(hosts.stderr).toContain("ECONNREFUSED");
  });

  it("refuses a list entry that is not a URL, naming it", async () => {
    const hosts = await cli(["host", "list", "--server", `${server.url},cp2:7700`]);
    expect(hosts.code).toBe(2);
    expect(hosts.stderr).toContain('novacron: --server "cp2:7700" is not a URL');
    expect(hosts.stderr).toContain("[NOVA_CONFIG]");
  });
});
