// Scraping a live server and a live agent (real processes over TLS) the way Prometheus
// does, with the files `novacron metrics credentials` writes: every metric a dashboard's
// query or an alert rule's expression in deploy/ names must be in what was scraped, the
// exposition passes `promtool check metrics` (bar prom-client's own process gauges), and
// nothing is served without credentials (the server answers 401; the agent refuses the
// TLS handshake). A scraper's certificate opens no other route of either. Then a guest
// (TCG) moves between two agents over DWCP: the server's migration histograms, the
// source agent's DWCP figures and the destination agent's series for the VM show it.
// Last, a revoked scraper certificate: refused by the server at once, by the agent from
// its next heartbeat, and by the agent after a restart; the other scraper still reads.
import { spawnSync } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { createCa, issueWithNewKey, SCRAPER_IDENTITY } from "../src/security/pki.js";
import { guestImageManifest, TestCluster } from "./helpers/cluster.js";
import { deployQueries, exposedNames, metricNamesInPromql } from "./helpers/deploy-queries.js";

const SERVER_PORT = 18460;
const AGENT_PORT = 18461;
const AGENT = "metrics-a1";
const AGENT2_PORT = 18462;
const AGENT2 = "metrics-a2";
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "10"];

/** What a TLS client with these files (as Prometheus's tls_config) gets from `url`. */
function scrape(
  url: string,
  tls: { ca: string; cert?: string; key?: string; servername?: string },
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ca: tls.ca,
        ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
        // As Prometheus does: the target's name is checked against its certificate.
        ...(tls.servername ? { servername: tls.servername } : {}),
        headers,
        timeout: 10_000,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
          if (body.length > 8 << 20) req.destroy(new Error("exposition over 8 MiB"));
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

describe("scraping a live server and agent with scraper credentials", () => {
  let c: TestCluster;
  let creds: { ca: string; cert: string; key: string };
  let agentUrl: string;
  let serverText = "";
  let agentText = "";

  beforeAll(async () => {
    await mkdir("/tmp/wt-metrics", { recursive: true });
    c = await TestCluster.create(SERVER_PORT, `/tmp/wt-metrics/scrape-${process.pid}`);
    await c.startServer();
    await c.startAgent(AGENT, AGENT_PORT, AGENT_FLAGS);
    await c.startAgent(AGENT2, AGENT2_PORT, AGENT_FLAGS);
    agentUrl = `https://127.0.0.1:${AGENT_PORT}`;
    const out = `${c.dir}/prometheus`;
    const res = await c.cli(["metrics", "credentials", "--out", out, "--name", "prom", "--days", "30"]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    creds = {
      ca: await readFile(`${out}/ca.pem`, "utf8"),
      cert: await readFile(`${out}/cert.pem`, "utf8"),
      key: await readFile(`${out}/key.pem`, "utf8"),
    };
  }, 120_000);

  afterAll(async () => {
    await c?.destroy();
  });

  it("scrapes the server and the agent under their certificates' names", async () => {
    const server = await scrape(`${c.serverUrl}/metrics`, { ...creds, servername: "localhost" });
    expect(server.status).toBe(200);
    serverText = server.body;
    const agent = await scrape(`${agentUrl}/metrics`, { ...creds, servername: AGENT });
    expect(agent.status).toBe(200);
    agentText = agent.body;
    expect(serverText).toMatch(/^novacron_hosts\{liveness="alive",cordoned="false"\} 2$/m);
    expect(agentText).toMatch(/^novacron_certificate_expiry_timestamp_seconds\{certificate="host"\} \d+$/m);
    expect(agentText).toMatch(/^novacron_agent_vms\{state="running"\} 0$/m);
    expect(agentText).toContain("# TYPE novacron_dwcp_goodput_bytes_per_second gauge");
  });

  it("finds every metric that a dashboard or an alert rule in deploy/ names", async () => {
    expect(serverText && agentText).toBeTruthy();
    const scraped = new Set([...exposedNames(serverText), ...exposedNames(agentText)]);
    const queries = await deployQueries();
    expect(queries.length).toBeGreaterThan(40);
    const missing: string[] = [];
    for (const q of queries)
      for (const name of metricNamesInPromql(q.expr))
        if (!scraped.has(name)) missing.push(`${q.where}: ${name}`);
    expect(missing).toEqual([]);
  });

  it("exposes names that promtool's linter accepts (prom-client's own active-handle gauges aside)", () => {
    for (const text of [serverText, agentText]) {
      const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      const problems = `${r.stdout}${r.stderr}`
        .split("\n")
        .filter((l) => l.trim() && !/^novacron_(server|agent)_nodejs_active_\w+_total non-counter/.test(l));
      expect(problems).toEqual([]);
    }
  });

  it("refuses to scrape without credentials: the server with 401, the agent at the TLS handshake", async () => {
    const anonymous = await scrape(`${c.serverUrl}/metrics`, { ca: creds.ca });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).not.toContain("novacron_");
    const badToken = await scrape(
      `${c.serverUrl}/metrics`,
      { ca: creds.ca },
      { authorization: "Bearer nope" },
    );
    expect(badToken.status).toBe(401);
    await expect(scrape(`${agentUrl}/metrics`, { ca: creds.ca, servername: AGENT })).rejects.toThrow();
    // A scraper certificate of another CA: neither accepts it.
    const other = await issueWithNewKey(await createCa("another CA"), {
      commonName: "scraper-x",
      uris: [SCRAPER_IDENTITY],
    });
    const forged = { ca: creds.ca, cert: other.certPem, key: other.keyPem };
    expect((await scrape(`${c.serverUrl}/metrics`, forged)).status).toBe(401);
    await expect(scrape(`${agentUrl}/metrics`, { ...forged, servername: AGENT })).rejects.toThrow();
  });

  it("lets the scraper's certificate open nothing but /metrics", async () => {
    expect((await scrape(`${c.serverUrl}/v1/vms`, creds)).status).toBe(403);
    expect((await scrape(`${agentUrl}/agent/v1/vms`, { ...creds, servername: AGENT })).status).toBe(403);
    expect((await scrape(`${agentUrl}/healthz`, { ...creds, servername: AGENT })).status).toBe(403);
  });

  it("shows a migration over DWCP in the server's histograms and on both agents", async () => {
    const manifest = await guestImageManifest();
    const imported = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", AGENT]);
    expect(imported.code, imported.stderr).toBe(0);
    const created = await c.api<{ id: string }>("POST", "/v1/vms", {
      name: "scraped",
      image: "guest",
      memoryMiB: 128,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // Placement takes the host that holds the image.
    expect((await c.waitVmState("scraped", "running", 120_000)).host).toBe(AGENT);
    const started = await c.api<{ id: string }>("POST", "/v1/vms/scraped/migrations", {
      targetHost: AGENT2,
      options: { transport: "dwcp" },
    });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const ended = await c.waitMigrationEnd<{
      state: string;
      transport: string;
      progress: {
        transport?: Record<"wireBytes" | "diskWireBytes" | "logicalBytes" | "diskLogicalBytes", number>;
      };
    }>(started.body.id);
    expect(ended).toMatchObject({ state: "completed", transport: "dwcp" });

    const sample = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
    const labels = 'transport="dwcp",outcome="completed"';
    // Observed as the run records the end, a moment after the API shows it.
    const server = await waitFor(
      async () => {
        const text = (await scrape(`${c.serverUrl}/metrics`, { ...creds, servername: "localhost" })).body;
        return text.includes(`novacron_migration_duration_seconds_count{${labels}}`) ? text : undefined;
      },
      { timeoutMs: 30_000, what: "the server to observe the migration's end" },
    );
    expect(
      sample(server, new RegExp(`^novacron_migration_duration_seconds_count\\{${labels}\\} (\\S+)$`, "m")),
    ).toBe(1);
    expect(
      sample(server, new RegExp(`^novacron_migration_downtime_seconds_count\\{${labels}\\} (\\S+)$`, "m")),
    ).toBe(1);
    const wire = sample(server, new RegExp(`^novacron_migration_wire_bytes_sum\\{${labels}\\} (\\S+)$`, "m"));
    const logical = sample(
      server,
      new RegExp(`^novacron_migration_logical_bytes_sum\\{${labels}\\} (\\S+)$`, "m"),
    );
    // The migration's own record of what DWCP relayed and sent, memory and disk.
    const t = ended.progress.transport!;
    expect(wire).toBe(t.wireBytes! + t.diskWireBytes!);
    expect(logical).toBe(t.logicalBytes! + t.diskLogicalBytes!);
    expect(logical).toBeGreaterThan(16 << 20);
    expect(server).toMatch(/^novacron_migrations_active\{state="transferring"\} 0$/m);

    // The source agent sent it over DWCP; the session is closed and its bytes counted.
    // The source agent ends the session and drops its copy when the server tells it the VM
    // moved, which comes just after the migration is recorded completed.
    const source = await waitFor(
      async () => {
        const text = (await scrape(`${agentUrl}/metrics`, { ...creds, servername: AGENT })).body;
        const counted = sample(text, /^novacron_dwcp_input_bytes_total (\S+)$/m) > 0;
        return counted && !text.includes(`vm_id="${created.body.id}"`) ? text : undefined;
      },
      { timeoutMs: 30_000, what: "the source agent to count the DWCP session and drop its copy" },
    );
    // The agent counts everything the session carried, to its last bytes; the migration's
    // record is its last progress poll, which may miss the final moments.
    const agentInput = sample(source, /^novacron_dwcp_input_bytes_total (\S+)$/m);
    const agentWire = sample(source, /^novacron_dwcp_wire_bytes_total (\S+)$/m);
    expect(agentInput).toBeGreaterThanOrEqual(logical);
    expect(agentInput).toBeLessThan(logical * 1.1);
    expect(agentWire).toBeGreaterThanOrEqual(wire);
    expect(agentWire).toBeLessThan(wire * 1.1);
    expect(source).toMatch(/^novacron_dwcp_sessions 0$/m);
    expect(source).toMatch(/^novacron_dwcp_mode\{mode="\w+"\} 1$/m);
    // The destination holds the VM now: its series says so.
    const running = `novacron_agent_vm_state{vm_id="${created.body.id}",state="running"} 1`;
    const destination = await waitFor(
      async () => {
        const url = `https://127.0.0.1:${AGENT2_PORT}/metrics`;
        const text = (await scrape(url, { ...creds, servername: AGENT2 })).body;
        return text.includes(running) ? text : undefined;
      },
      { timeoutMs: 30_000, what: "the destination agent to show the VM running" },
    );
    expect(destination).toMatch(/^novacron_agent_vms\{state="running"\} 1$/m);
  }, 300_000);

  it("refuses a revoked scraper certificate on the server at once and on the agent from its next heartbeat, also after a restart", async () => {
    const out = `${c.dir}/prometheus-revoked`;
    const made = await c.cli(["metrics", "credentials", "--out", out, "--name", "lost"]);
    expect(made.code, made.stderr).toBe(0);
    const lost = {
      ca: await readFile(`${out}/ca.pem`, "utf8"),
      cert: await readFile(`${out}/cert.pem`, "utf8"),
      key: await readFile(`${out}/key.pem`, "utf8"),
    };
    expect((await scrape(`${agentUrl}/metrics`, { ...lost, servername: AGENT })).status).toBe(200);
    const listed = await c.cli(["metrics", "scrapers", "--json"]);
    const serial = (JSON.parse(listed.stdout) as { serial: string; name: string }[]).find(
      (x) => x.name === "lost",
    )?.serial;
    expect(serial).toBeDefined();

    const revoked = await c.cli(["metrics", "revoke", serial!]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`Revoked scraper certificate ${serial}`);
    expect((await scrape(`${c.serverUrl}/metrics`, { ...lost, servername: "localhost" })).status).toBe(401);
    // Agents learn it from the reply to their next heartbeat (every 2 s).
    await waitFor(
      async () => (await scrape(`${agentUrl}/metrics`, { ...lost, servername: AGENT })).status === 401,
      {
        timeoutMs: 15_000,
        intervalMs: 250,
        what: "the agent to refuse the revoked scraper certificate",
      },
    );
    // The other scraper keeps reading both.
    expect((await scrape(`${agentUrl}/metrics`, { ...creds, servername: AGENT })).status).toBe(200);
    expect((await scrape(`${c.serverUrl}/metrics`, { ...creds, servername: "localhost" })).status).toBe(200);
    // A restarted agent refuses it before its first heartbeat: it kept the list.
    await c.stop(AGENT);
    await c.startAgent(AGENT, AGENT_PORT, AGENT_FLAGS);
    expect((await scrape(`${agentUrl}/metrics`, { ...lost, servername: AGENT })).status).toBe(401);
    expect((await scrape(`${agentUrl}/metrics`, { ...creds, servername: AGENT })).status).toBe(200);
  }, 120_000);
});
