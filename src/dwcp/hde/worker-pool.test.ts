import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { BatchBuilder, decodeBatch, Op } from "./batch.js";
import { BatchCompressor, BoundedDecompressor } from "./codec.js";
import { exitingWorkerUrl, testWorkerUrl, throwingWorkerUrl } from "./hde-worker.test-util.js";
import { HASH_BYTES, PAGE_SIZE, pageHash } from "./page.js";
import { HdeWorkerPool, THREADS_ENV } from "./worker-pool.js";

const pools: HdeWorkerPool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});
function pool(threads: number, workerUrl = testWorkerUrl()): HdeWorkerPool {
  const p = new HdeWorkerPool({ threads, workerUrl });
  pools.push(p);
  return p;
}

const text = Buffer.from("pages of kernel text and page tables, mostly alike ".repeat(100)).subarray(
  0,
  PAGE_SIZE,
);

/** A batch of `pages` records mixing every kind, as the sender builds them. */
function buildBatch(builder: BatchBuilder, pages: number, seed: number): void {
  for (let i = 0; i < pages; i++) {
    const n = seed * 10_000 + i;
    switch (i % 5) {
      case 0:
        builder.zero(n);
        break;
      case 1: {
        const p = Buffer.from(text);
        p.writeUInt32BE(n, (i * 16) % 4000);
        builder.full(n, p, true);
        break;
      }
      case 2:
        builder.full(n, randomBytes(PAGE_SIZE), false);
        break;
      case 3:
        builder.ref(n, randomBytes(HASH_BYTES));
        break;
      default:
        builder.delta(n, randomBytes(HASH_BYTES), randomBytes(HASH_BYTES), Buffer.from([4, 2, 9, 9]));
    }
  }
}

async function expectWorkerError(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isNovaError(err) && err.code).toBe("NOVA_DWCP_WORKER");
}

describe("HDE worker pool", () => {
  it("encodes section A byte for byte as the inline compressor does, at every level", async () => {
    const p = pool(2);
    for (const level of [0, 1, 3, 6]) {
      for (const pages of [1, 40, 256]) {
        const builder = new BatchBuilder();
        buildBatch(builder, pages, level);
        const batch = builder.take();
        const inline = new BatchCompressor(level);
        const [codec, body] = inline.compress(Buffer.from(batch.a));
        const remote = await p.encode(level, batch.a);
        expect(remote.codec).toBe(codec);
        expect(remote.body.equals(body)).toBe(true);
      }
    }
  });

  it("decodes and hashes a batch as decodeBatch and pageHash do, and rejects a malformed one", async () => {
    const p = pool(1);
    const builder = new BatchBuilder();
    buildBatch(builder, 200, 1);
    const msg = builder.finish(new BatchCompressor(3));
    const expected = decodeBatch(msg, new BoundedDecompressor(), 1 << 24);
    const d = await p.decode(msg, 1 << 24);
    const hashes: Buffer[] = [];
    for (const r of expected) if (r.op === Op.FULL || r.op === Op.FULL_B) hashes.push(pageHash(r.page));
    expect(d.hashes.equals(Buffer.concat(hashes))).toBe(true);
    expect(Buffer.concat([d.a, d.b]).length).toBeGreaterThan(msg.length);

    const bad = Buffer.from(msg);
    bad.writeUInt32BE(msg.readUInt32BE(2) + 1, 2); // declared raw size no longer matches
    const err = await p.decode(bad, 1 << 24).catch((e: unknown) => e);
    expect(isNovaError(err) && err.code).toBe("NOVA_DWCP_PROTOCOL");
    // The thread survives a job's error.
    expect((await p.decode(msg, 1 << 24)).hashes.equals(d.hashes)).toBe(true);
  });

  it("answers each of many concurrent jobs with its own result", async () => {
    const p = pool(2);
    const inputs = Array.from({ length: 40 }, (_, i) => {
      const b = new BatchBuilder();
      buildBatch(b, 20 + i, i);
      return b.take().a;
    });
    const copies = inputs.map((a) => Buffer.from(a));
    const results = await Promise.all(inputs.map((a) => p.encode(3, a)));
    const inline = new BatchCompressor(3);
    results.forEach((r, i) => {
      expect(r.body.equals(inline.compress(copies[i]!)[1])).toBe(true);
    });
    expect(p.busy).toBe(0);
  });

  it("fails every job of a thread that exits or cannot start, and never hangs", async () => {
    const exits = pool(1, exitingWorkerUrl());
    const a = new BatchBuilder();
    buildBatch(a, 30, 1);
    const b = new BatchBuilder();
    buildBatch(b, 30, 2);
    await Promise.all([
      expectWorkerError(exits.encode(3, a.take().a)),
      expectWorkerError(exits.encode(3, b.take().a)),
    ]);
    expect(exits.busy).toBe(0);

    const throws = pool(1, throwingWorkerUrl());
    const c = new BatchBuilder();
    buildBatch(c, 30, 3);
    await expectWorkerError(throws.encode(3, c.take().a));

    const closed = pool(1);
    await closed.close();
    const d = new BatchBuilder();
    buildBatch(d, 30, 4);
    await expectWorkerError(closed.encode(3, d.take().a));
  });

  it("is sized from the host, capped, and settable (0 = inline)", () => {
    expect(HdeWorkerPool.defaultThreads({ [THREADS_ENV]: "0" })).toBe(0);
    expect(HdeWorkerPool.defaultThreads({ [THREADS_ENV]: "3" })).toBe(3);
    const auto = HdeWorkerPool.defaultThreads({});
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(8);
    expect(() => HdeWorkerPool.defaultThreads({ [THREADS_ENV]: "many" })).toThrow(/NOVACRON_HDE_THREADS/);
    expect(() => new HdeWorkerPool({ threads: -1 })).toThrow();
  });
});
