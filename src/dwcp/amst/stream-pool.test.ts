import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FrameType } from "../wire/frame.js";
import type { Connection } from "./connection.js";
import { StreamPool, type StreamPoolOptions } from "./stream-pool.js";

// Real loopback sockets: the pool's connections are handed our side, the test keeps the
// peer's side to close it as a network or a peer would.
let server: Server;
let port: number;
const peers: Socket[] = [];
const pending: ((s: Socket) => void)[] = [];
const pools: StreamPool[] = [];

beforeEach(async () => {
  server = createServer((s) => {
    // A reset is what some tests do to the connection; the pool's side reports it.
    s.on("error", () => {});
    peers.push(s);
    pending.shift()?.(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as { port: number }).port;
});

afterEach(async () => {
  vi.useRealTimers();
  // Shut pools down first: a running dialer pool would redial into the next test's server.
  for (const p of pools.splice(0)) p.shutDown("destroy");
  for (const s of peers.splice(0)) s.destroy();
  await new Promise((r) => server.close(r));
});

/** A connected socket and the peer's end of it. */
async function socketPair(): Promise<{ socket: Socket; peer: Socket }> {
  const peer = new Promise<Socket>((resolve) => pending.push(resolve));
  const socket = connect(port, "127.0.0.1");
  await once(socket, "connect");
  return { socket, peer: await peer };
}

function makePool(opts: Partial<StreamPoolOptions> = {}) {
  const added: Connection[] = [];
  const closed: Connection[] = [];
  let orphaned = 0;
  const inflight = new Map<Connection, number>();
  const waiters: (() => void)[] = [];
  const pool = new StreamPool(
    {
      maxPayload: 256 * 1024,
      connectionHighWater: 512 * 1024,
      reconnectTimeoutMs: 1000,
      inflightOn: (c) => inflight.get(c) ?? 0,
      ...opts,
    },
    {
      frame: () => {},
      added: (c) => added.push(c),
      closed: (c) => {
        closed.push(c);
        // What the session does for a multi-stream session that is still running.
        pool.replaceLost(c);
        for (const w of waiters.splice(0)) w();
      },
      drain: () => {},
      orphaned: () => {
        orphaned++;
      },
    },
  );
  pools.push(pool);
  /** Resolves once `n` connections have closed in all. */
  const closedCount = async (n: number) => {
    while (closed.length < n) await new Promise<void>((r) => waiters.push(r));
  };
  return { pool, added, closed, inflight, closedCount, orphans: () => orphaned };
}

/** A redial that connects to the test server, as the dialer's JOIN would. */
function redialer() {
  let dials = 0;
  const redial = async () => {
    dials++;
    const { socket } = await socketPair();
    return { socket, rest: Buffer.alloc(0) };
  };
  return { redial, dials: () => dials };
}

describe("StreamPool", () => {
  it("reports each added connection and, when one closes, drops it once and keeps its written bytes", async () => {
    const { pool, added, closed, closedCount } = makePool();
    const a = await socketPair();
    const b = await socketPair();
    const ca = pool.add(a.socket, Buffer.alloc(0))!;
    pool.add(b.socket, Buffer.alloc(0));
    expect(added).toHaveLength(2);
    expect(pool.size).toBe(2);
    ca.write({ type: FrameType.PING, flags: 0, channel: 0, seq: 0, payload: Buffer.alloc(8) });
    const written = pool.bytesWritten;
    expect(written).toBeGreaterThan(0);

    a.peer.destroy();
    await closedCount(1);
    expect(closed).toEqual([ca]);
    expect(pool.size).toBe(1);
    expect(pool.sockets()).toEqual([b.socket]);
    expect(pool.bytesWritten).toBe(written);
    expect(pool.connectionsReplaced).toBe(1);
  });

  it("picks the least-loaded live connection for frames and skips draining ones", async () => {
    const { redial } = redialer();
    const { pool, inflight } = makePool({ redial });
    pool.add((await socketPair()).socket, Buffer.alloc(0));
    await pool.setTarget(3);
    expect(pool.size).toBe(3);
    const [c1, c2, c3] = [...pool];
    inflight.set(c1!, 1).set(c2!, 1).set(c3!, 1);
    await pool.setTarget(1);
    // The surplus drains but still carries unacknowledged frames, so it stays open.
    expect([...pool].map((c) => c.draining)).toEqual([false, true, true]);
    expect(pool.sending()).toEqual([c1]);
    expect(pool.pickForSend(50)).toBe(c1);
  });

  it("ends draining connections once nothing they carried is unacknowledged, without counting them as lost", async () => {
    const { redial, dials } = redialer();
    const { pool, inflight, closedCount } = makePool({ redial });
    pool.add((await socketPair()).socket, Buffer.alloc(0));
    await pool.setTarget(3);
    expect(dials()).toBe(2);
    for (const c of pool) inflight.set(c, 10);
    await pool.setTarget(1);
    expect(pool.size).toBe(3);
    for (const c of pool) inflight.set(c, 0);
    pool.retireIdle();
    await closedCount(2);
    expect(pool.size).toBe(1);
    expect(pool.connectionsReplaced).toBe(0);
    expect(dials()).toBe(2);
  });

  it("redials a lost connection back to the target (dialer)", async () => {
    const { redial, dials } = redialer();
    const { pool, added, closedCount } = makePool({ redial });
    pool.add((await socketPair()).socket, Buffer.alloc(0));
    await pool.setTarget(2);
    expect(pool.size).toBe(2);
    peers[0]!.destroy();
    await closedCount(1);
    await vi.waitFor(() => expect(pool.size).toBe(2));
    expect(dials()).toBe(2);
    expect(added).toHaveLength(3);
    expect(pool.connectionsReplaced).toBe(1);
  });

  it("never dials without a redial (listener): setTarget changes nothing", async () => {
    const { pool, added } = makePool();
    pool.add((await socketPair()).socket, Buffer.alloc(0));
    await pool.setTarget(4);
    expect(pool.targetCount).toBe(1);
    expect(pool.size).toBe(1);
    expect(added).toHaveLength(1);
  });

  it("reports an orphaned pool when the last connection is lost and none comes back in time", async () => {
    const { pool, closedCount, orphans } = makePool({ reconnectTimeoutMs: 5000 });
    const a = await socketPair();
    pool.add(a.socket, Buffer.alloc(0));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    a.peer.destroy();
    await closedCount(1);
    vi.advanceTimersByTime(4999);
    expect(orphans()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(orphans()).toBe(1);
  });

  it("cancels the orphan deadline when a connection joins in time", async () => {
    const { pool, closedCount, orphans } = makePool({ reconnectTimeoutMs: 5000 });
    const a = await socketPair();
    const b = await socketPair();
    pool.add(a.socket, Buffer.alloc(0));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    a.peer.destroy();
    await closedCount(1);
    pool.add(b.socket, Buffer.alloc(0));
    vi.advanceTimersByTime(10_000);
    expect(orphans()).toBe(0);
    expect(pool.size).toBe(1);
  });

  it("after shutDown destroys a connection handed to it, dials nothing and arms no deadline", async () => {
    const { redial, dials } = redialer();
    const { pool, added, closedCount, orphans } = makePool({ redial, reconnectTimeoutMs: 5000 });
    pool.add((await socketPair()).socket, Buffer.alloc(0));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    pool.shutDown("destroy");
    expect(pool.isRunning).toBe(false);
    await closedCount(1);
    expect(pool.size).toBe(0);

    const late = await socketPair();
    expect(pool.add(late.socket, Buffer.alloc(0))).toBeNull();
    expect(late.socket.destroyed).toBe(true);
    await pool.setTarget(3);
    expect(dials()).toBe(0);
    expect(added).toHaveLength(1);
    // The closed connection was not counted as lost and left no orphan deadline behind.
    expect(pool.connectionsReplaced).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(orphans()).toBe(0);
  });
});
