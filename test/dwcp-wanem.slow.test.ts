import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason, listNamespaces } from "../src/testing/wanem/netns.js";

const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping WAN emulator suite: ${unavailable}`);

/** Sends `bytes` from site B to site A over one TCP connection; returns seconds taken. */
async function transfer(link: WanLink, bytes: number, port: number): Promise<number> {
  const a = await link.sockets("a");
  const b = await link.sockets("b");
  const server = await a.listen(port);
  try {
    const accepted = once(server, "connection");
    const client = await b.connect(ADDR_A, port);
    const [conn] = (await accepted) as [import("node:net").Socket];
    const start = performance.now();
    let got = 0;
    const done = new Promise<void>((resolve) => {
      conn.on("data", (d: Buffer) => {
        got += d.length;
        if (got >= bytes) resolve();
      });
    });
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      if (!client.write(chunk)) await once(client, "drain");
    }
    await done;
    const seconds = (performance.now() - start) / 1000;
    client.destroy();
    conn.destroy();
    return seconds;
  } finally {
    server.close();
  }
}

describe.skipIf(unavailable !== null)("WAN emulator", () => {
  let link: WanLink;
  beforeAll(async () => {
    link = await WanLink.create({ spec: "rate=20mbit,rtt=40ms,loss=0", cc: "cubic" });
  });
  afterAll(async () => {
    await link?.close();
  });

  it("limits the rate and adds the delay, and reports the congestion control", async () => {
    expect(link.cc).toBe("cubic");
    const seconds = await transfer(link, 5 * 1024 * 1024, 47010);
    const mbps = (5 * 8 * 1.048576) / seconds;
    expect(mbps).toBeLessThan(21);
    expect(mbps).toBeGreaterThan(12);
    const stats = await link.stats();
    expect(stats!.ba.rx_bytes).toBeGreaterThan(5 * 1024 * 1024);
  });

  it("drops packets at the configured loss rate after a runtime change", async () => {
    await link.set("both", "rate=20mbit,rtt=40ms,loss=2%");
    const before = (await link.stats())!.ba;
    await transfer(link, 2 * 1024 * 1024, 47011);
    const after = (await link.stats())!.ba;
    const pkts = after.rx_pkts - before.rx_pkts;
    const lost = after.drop_loss - before.drop_loss;
    expect(lost / pkts).toBeGreaterThan(0.01);
    expect(lost / pkts).toBeLessThan(0.04);
    await link.set("both", "rate=20mbit,rtt=40ms,loss=0");
  });

  it("removes its namespaces on close", async () => {
    const extra = await WanLink.create({ spec: "dc" });
    expect(await listNamespaces()).toContain(extra.nsA);
    await extra.close();
    expect(await listNamespaces()).not.toContain(extra.nsA);
  });

  it("adds an unemulated management network that both sites and the host reach, and removes it", async () => {
    const mlink = await WanLink.create({ spec: "dc", management: true });
    const net = mlink.management!;
    const { createServer } = await import("node:net");
    const server = createServer((s) => s.end("host"));
    await new Promise<void>((r) => server.listen(0, net.host, r));
    const port = (server.address() as { port: number }).port;
    try {
      for (const site of ["a", "b"] as const) {
        const sock = await (await mlink.sockets(site)).connect(net.host, port);
        const [data] = (await once(sock, "data")) as [Buffer];
        expect(data.toString()).toBe("host");
        sock.destroy();
      }
      // Site B reaches site A's management address directly (one L2 segment).
      const listener = await (await mlink.sockets("a")).listen(0, net.a);
      const aPort = (listener.address() as { port: number }).port;
      const accepted = once(listener, "connection");
      const fromB = await (await mlink.sockets("b")).connect(net.a, aPort);
      await accepted;
      fromB.destroy();
      listener.close();
    } finally {
      server.close();
      await mlink.close();
    }
    const { execFileSync } = await import("node:child_process");
    expect(execFileSync("ip", ["-o", "link", "show", "type", "bridge"]).toString()).not.toContain(
      `${mlink.nsA.replace(/^ncdw-/, "ncmb").replace(/-a$/, "")}:`,
    );
  });
});
