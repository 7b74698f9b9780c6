// The server on a real PostgreSQL server (DATABASE_URL) instead of embedded PGlite: same
// API, tokens created once, state kept across restarts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../src/demo/local-cluster.js";
import { createPostgresDatabase, type TestDatabase } from "./helpers/databases.js";

describe("server on PostgreSQL", () => {
  let db: TestDatabase;
  let c: LocalCluster;

  beforeAll(async () => {
    db = await createPostgresDatabase();
    c = await LocalCluster.create(17740);
  });
  afterAll(async () => {
    await c?.destroy();
    await db?.drop();
  });

  it("serves the API from PostgreSQL and keeps its tokens across a restart", async () => {
    const first = await c.startServer(["--database-url", db.url!]);
    expect(first.output.join("\n")).toContain("database: PostgreSQL");
    expect(first.output.join("\n")).toContain("Created the admin token");
    const health = await (await c.fetch("/healthz")).json();
    expect(health).toMatchObject({ status: "ok", database: "postgres" });

    await c.startAgent("pg-a1", 17841, ["--memory", "512"]);
    const hosts = (await c.api<{ hosts: { name: string }[] }>("GET", "/v1/hosts")).body.hosts;
    expect(hosts.map((h) => h.name)).toEqual(["pg-a1"]);

    await c.stop("server");
    const second = await c.startServer(["--database-url", db.url!]);
    expect(second.output.join("\n")).not.toContain("Created the admin token");
    // The token from the first start still works, and the host is still known.
    const again = (await c.api<{ hosts: { name: string }[] }>("GET", "/v1/hosts")).body.hosts;
    expect(again.map((h) => h.name)).toEqual(["pg-a1"]);
  });

  it("refuses to start with a clear message when PostgreSQL is unreachable", async () => {
    const bad = await c.cli(
      [
        "server",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--data-dir",
        `${c.dir}/bad`,
        "--listen",
        "127.0.0.1:17749",
      ],
      60_000,
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("Failed connecting to PostgreSQL at postgres://nobody@127.0.0.1:1/none");
    expect(bad.stderr).toContain("NOVA_STORE");
  });
});
