/**
 * Fair sharing of one emulated link between two DWCP sessions (PBA LinkShare): weights
 * are honoured on real TCP through a real bottleneck, every transfer has an ETA, and the
 * shared capacity follows the tuner's prediction.
 * Skips when not root.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import { OpaqueSender, readOpaque } from "../src/dwcp/hde/opaque.js";
import { LinkShare, type SharedTransfer } from "../src/dwcp/pba/link-share.js";
import { Tuner } from "../src/dwcp/tuner.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";

const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping DWCP sharing suite: ${unavailable}`);

describe.skipIf(unavailable !== null)("sharing one WAN link between transfers", () => {
  let link: WanLink;
  beforeAll(async () => {
    link = await WanLink.create({ spec: "rate=40mbit,rtt=20ms,loss=0", cc: "cubic" });
  });
  afterAll(async () => {
    await link?.close();
  });

  it("gives two concurrent sessions throughput in proportion to their weights, with ETAs", async () => {
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    // Allocate a little under the link rate so the pacer, not the bottleneck queue, decides.
    const share = new LinkShare((36e6 / 8) * 0.95);
    const received = [0, 0];
    // ETAs are read for both transfers at one moment while both are sending: read at each
    // transfer's own end, the later one would see the link to itself and look faster.
    const transfers: SharedTransfer[] = [];
    let active = 0;
    let etas: number[] | null = null;
    const run = async (i: number, weight: number) => {
      const port = 47500 + i;
      const listener = await DwcpListener.listen({ server: await a.listen(port), tls: dwcpTestTls().listen });
      const [client, server] = await Promise.all([
        dialSession({ connect: () => b.connect(ADDR_A, port), streams: 2, tls: dwcpTestTls().dial }),
        listener.accept(),
      ]);
      const rx = (async () => {
        for await (const chunk of readOpaque(await server.accept())) received[i]! += chunk.length;
      })();
      const transfer = share.join({ totalBytes: 200 * 1024 * 1024, weight });
      transfers[i] = transfer;
      active++;
      const tx = new OpaqueSender(client.openChannel(`t${i}`), 0, 64 * 1024, transfer);
      const chunk = randomBytes(64 * 1024);
      const stop = performance.now() + 6000;
      while (performance.now() < stop) {
        await tx.write(chunk);
        if (!etas && active === 2 && performance.now() > stop - 3000) {
          etas = transfers.map((t) => t.allocation().etaSeconds);
        }
      }
      active--;
      await tx.end();
      await rx;
      transfer.done();
      await client.close();
      await listener.close();
    };
    await Promise.all([run(0, 1), run(1, 3)]);
    const ratio = received[1]! / received[0]!;
    console.log(`weights 3:1 got ${ratio.toFixed(2)}:1`);
    expect(ratio).toBeGreaterThan(2.2);
    expect(ratio).toBeLessThan(4);
    // Each transfer has a finite ETA; the heavier one finishes its 200 MiB sooner.
    expect(etas).not.toBeNull();
    const [eta1, eta3] = etas as unknown as [number, number];
    expect(Number.isFinite(eta1)).toBe(true);
    expect(eta3).toBeLessThan(eta1);
  });

  it("takes the shared capacity from the tuner's prediction, growing a share that started far too low", async () => {
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const port = 47510;
    // 1 Mbit/s: a fortieth of the link. Left alone, the pacer would hold the transfer there.
    const share = new LinkShare(1e6 / 8);
    const listener = await DwcpListener.listen({ server: await a.listen(port), tls: dwcpTestTls().listen });
    const [client, server] = await Promise.all([
      dialSession({ connect: () => b.connect(ADDR_A, port), streams: 2, tls: dwcpTestTls().dial }),
      listener.accept(),
    ]);
    let received = 0;
    const rx = (async () => {
      for await (const chunk of readOpaque(await server.accept())) received += chunk.length;
    })();
    const tuner = new Tuner(client, [], { linkShare: share, intervalMs: 250 });
    await tuner.ready;
    const transfer = share.join({ totalBytes: 500 * 1024 * 1024, weight: 1 });
    const tx = new OpaqueSender(client.openChannel("t"), 0, 64 * 1024, transfer);
    const chunk = randomBytes(64 * 1024);
    const stop = performance.now() + 6000;
    while (performance.now() < stop) await tx.write(chunk);
    await tx.end();
    await rx;
    tuner.stop();
    transfer.done();
    await client.close();
    await listener.close();
    const capacityMbps = (share.capacityBps * 8) / 1e6;
    console.log(`shared capacity from the tuner: ${capacityMbps.toFixed(1)} Mbit/s; sent ${received} bytes`);
    // The link is 40 Mbit/s: the share ends near it, neither stuck at 1 nor far beyond.
    expect(capacityMbps).toBeGreaterThan(20);
    expect(capacityMbps).toBeLessThan(70);
    // Far more than 6 s at the initial 1 Mbit/s (750 kB) went through.
    expect(received).toBeGreaterThan(8 * 750_000);
  });
});
