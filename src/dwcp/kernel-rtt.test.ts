import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { kernelMinRttMs, parseMinRtt } from "./kernel-rtt.js";

describe("kernel RTT", () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  it("parses minrtt from ss -ti output and nothing else", () => {
    const line =
      "\t bbr wscale:10,10 rto:204 rtt:0.019/0.015 bbr:(bw:1bps,mrtt:0.005) minrtt:0.007 snd_wnd:65536";
    expect(parseMinRtt(line)).toBe(0.007);
    expect(parseMinRtt("rtt:51.2/3 minrtt:50 cwnd:10")).toBe(50);
    expect(parseMinRtt("rtt:0.019/0.015 mrtt:0.005")).toBeNull();
  });

  it("reads a loopback connection's minimum RTT from the kernel, well under a millisecond", async () => {
    const server = createServer((s) => s.pipe(s));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const client: Socket = connect(port, "127.0.0.1");
    cleanup.push(() => {
      client.destroy();
      server.close();
    });
    await once(client, "connect");
    client.write("ping");
    await once(client, "data");
    const rtt = await kernelMinRttMs([client]);
    expect(rtt).not.toBeNull();
    expect(rtt!).toBeGreaterThan(0);
    expect(rtt!).toBeLessThan(1);
  });

  it("returns null for sockets that are not connected", async () => {
    const s = connect(1, "127.0.0.1");
    s.on("error", () => {});
    s.destroy();
    expect(await kernelMinRttMs([s])).toBeNull();
    expect(await kernelMinRttMs([])).toBeNull();
  });
});
