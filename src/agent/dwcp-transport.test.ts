/**
 * The agent's DWCP hello over loopback: a destination accepts a session only with the
 * token it issued, lets a newer session replace one that never started relaying (the
 * source chose QEMU's transport, or restarted), and refuses a second one once relays run.
 * A malformed hello gets the same answer as a wrong token; an unreachable listener makes
 * "auto" fall back to QEMU's transport and "dwcp" fail.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dialSession } from "../dwcp/amst/dial.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import { AgentDwcp } from "./dwcp-transport.js";

const log = pino({ level: "silent" });
let dirs: string[] = [];
let agents: AgentDwcp[] = [];

async function agent(): Promise<AgentDwcp> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "nc-agent-dwcp-"));
  dirs.push(dataDir);
  const a = await AgentDwcp.start({ dataDir, host: "127.0.0.1", cacheBytes: 16 * 1024 * 1024, log });
  agents.push(a);
  return a;
}

beforeEach(() => {
  dirs = [];
  agents = [];
});

afterEach(async () => {
  for (const a of agents) await a.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("AgentDwcp sessions", () => {
  it("lets a newer session replace one that carried nothing, and picks QEMU's transport on loopback", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m1", "vm1", { port: 9 }, { port: 9 });
    // A source that said hello and then went quiet (it restarted; its session can look
    // alive at the destination for a while): still open here.
    const stale = await dialSession({ host: ep.host, port: ep.port });
    const hello = stale.openChannel("hello");
    await hello.send(Buffer.from(JSON.stringify({ migrationId: "m1", token: ep.token })));
    await hello.end();
    expect(JSON.parse((await hello.read())!.toString("utf8"))).toEqual({ ok: true });
    const chosen = await src.startOutgoing("m1", "vm1", ep, "auto");
    expect(chosen.chosen).toBe("qemu");
    expect(chosen.reason).toMatch(/datacenter-class path/);
    // Decided on the kernel's RTT, which a busy event loop cannot inflate.
    expect(chosen.reason).toMatch(/RTT 0\.\d\d ms \(kernel\)/);
    stale.destroy();
  });

  it("refuses a wrong token and a second session once relays run", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m2", "vm2", { port: 9 }, { port: 9 });
    await expect(src.startOutgoing("m2", "vm2", { ...ep, token: "AAAA" }, "dwcp")).rejects.toThrow(
      /unknown migration or bad token/,
    );
    const chosen = await src.startOutgoing("m2", "vm2", ep, "dwcp");
    expect(chosen.chosen).toBe("dwcp");
    const other = await agent();
    await expect(other.startOutgoing("m2", "vm2", ep, "dwcp")).rejects.toThrow(/already has a session/);
  });

  it("answers a malformed hello like a wrong token and keeps the migration open", async () => {
    const dst = await agent();
    const src = await agent();
    const ep = dst.expectIncoming("m3", "vm3", { port: 9 }, { port: 9 });
    for (const bad of ["{not json", JSON.stringify({ migrationId: "m3" }), "x".repeat(5000)]) {
      const peer = await dialSession({ host: ep.host, port: ep.port });
      const hello = peer.openChannel("hello");
      await hello.send(Buffer.from(bad));
      await hello.end();
      expect(JSON.parse((await hello.read())!.toString("utf8"))).toEqual({
        ok: false,
        error: "unknown migration or bad token",
      });
      peer.destroy();
    }
    expect((await src.startOutgoing("m3", "vm3", ep, "dwcp")).chosen).toBe("dwcp");
  });

  it("auto falls back to QEMU's transport when the listener is unreachable; dwcp fails", async () => {
    const src = await agent();
    // A port that was just free: nothing listens there.
    const probe = await DwcpListener.listen({ host: "127.0.0.1", port: 0 });
    const port = probe.port;
    await probe.close();
    const to = { host: "127.0.0.1", port, token: "AAAA" };
    const chosen = await src.startOutgoing("m4", "vm4", to, "auto");
    expect(chosen).toMatchObject({ chosen: "qemu", mode: null, rttMs: null, probedMbps: null });
    expect(chosen.reason).toMatch(/^auto: the destination's DWCP listener is unreachable \(/);
    expect(src.outgoingOf("m4")).toBeUndefined();
    await expect(src.startOutgoing("m4", "vm4", to, "dwcp")).rejects.toThrow();
  });
});
