import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { ALL_CAPABILITIES } from "../wire/handshake.js";
import { dialSession } from "./dial.js";
import { DwcpListener } from "./listen.js";
import { DwcpSession } from "./session.js";
import { DEFAULT_TUNING } from "./session-config.js";
import { SESSION, type SessionState } from "./session-state.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function pair() {
  const listener = await DwcpListener.listen({ versions: [3] });
  cleanup.push(() => listener.close());
  const [client, server] = await Promise.all([
    dialSession({ port: listener.port, streams: 2, versions: [3] }),
    listener.accept(),
  ]);
  cleanup.push(
    () => client.destroy(),
    () => server.destroy(),
  );
  return { client, server };
}

/** A session with no connection at all: enough to watch its state machine. */
function bareSession(): DwcpSession {
  const s = new DwcpSession({
    role: "listener",
    version: 3,
    capabilities: ALL_CAPABILITIES,
    sessionId: randomBytes(16),
    peerWindowBytes: DEFAULT_TUNING.windowBytes,
    peerMaxPayload: DEFAULT_TUNING.maxPayload,
    tuning: { ...DEFAULT_TUNING },
    keys: {
      join: randomBytes(32),
      digestDialerToListener: randomBytes(32),
      digestListenerToDialer: randomBytes(32),
    },
  });
  cleanup.push(() => s.destroy());
  return s;
}

const LEGAL: [SessionState, SessionState][] = [
  ["open", "closing"],
  ["open", "failed"],
  ["closing", "closed"],
  ["closing", "failed"],
];

describe("DWCP session state machine", () => {
  it("allows exactly open → closing | failed and closing → closed | failed; closed and failed are final", () => {
    for (const from of SESSION.list) {
      for (const to of SESSION.list) {
        const legal = LEGAL.some(([f, t]) => f === from && t === to);
        expect(SESSION.can(from, to), `${from} → ${to}`).toBe(legal);
      }
    }
    expect(SESSION.initial).toEqual(["open"]);
    expect(SESSION.final).toEqual(["closed", "failed"]);
  });

  it("refuses an illegal move with NOVA_ILLEGAL_STATE (a closed session never reopens, open never skips closing)", () => {
    for (const [from, to] of [
      ["closed", "open"],
      ["failed", "closing"],
      ["open", "closed"],
      ["closing", "open"],
      ["closed", "failed"],
    ] as [SessionState, SessionState][]) {
      let err: unknown;
      try {
        SESSION.assertTransition("session t", from, to);
      } catch (e) {
        err = e;
      }
      expect(isNovaError(err, "NOVA_ILLEGAL_STATE"), `${from} → ${to}`).toBe(true);
    }
  });

  it("moves open → closing → closed on both sides of an orderly close", async () => {
    const { client, server } = await pair();
    expect([client.state, server.state]).toEqual(["open", "open"]);
    const closing = client.close();
    expect(client.state).toBe("closing");
    await Promise.all([closing, server.closed]);
    expect([client.state, server.state]).toEqual(["closed", "closed"]);
    // Ending an ended session changes nothing (no closed → failed move is attempted).
    client.destroy();
    expect(client.state).toBe("closed");
    expect(await client.closed).toBeNull();
  });

  it("moves open → failed on destroy, and the peer fails on the ERROR it receives", async () => {
    const { client, server } = await pair();
    client.destroy();
    expect(client.state).toBe("failed");
    const err = await server.closed;
    expect(isNovaError(err, "NOVA_DWCP_CONNECTION")).toBe(true);
    expect(server.state).toBe("failed");
  });

  it("guards its own transition: an illegal move throws and leaves the state as it was", () => {
    const s = bareSession();
    const transition = (to: SessionState) =>
      (s as unknown as { transition(to: SessionState): void }).transition(to);
    expect(() => transition("closed")).toThrow(expect.objectContaining({ code: "NOVA_ILLEGAL_STATE" }));
    expect(s.state).toBe("open");
    s.destroy();
    expect(s.state).toBe("failed");
    expect(() => transition("open")).toThrow(expect.objectContaining({ code: "NOVA_ILLEGAL_STATE" }));
    expect(s.state).toBe("failed");
    expect(s.isOpen).toBe(false);
  });
});
