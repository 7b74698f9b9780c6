import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { dialSession } from "../amst/dial.js";
import { DwcpListener } from "../amst/listen.js";
import { Msg } from "./batch.js";
import { PREFIX_BYTES } from "./page.js";
import { readInventory } from "./receiver-mirror.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function channels() {
  const listener = await DwcpListener.listen();
  cleanup.push(() => listener.close());
  const [client, server] = await Promise.all([dialSession({ port: listener.port }), listener.accept()]);
  cleanup.push(
    () => client.destroy(),
    () => server.destroy(),
  );
  const tx = server.openChannel("inv");
  return { tx, rx: await client.accept() };
}

function inventory(capacity: number, first: number, count: number): Buffer {
  const m = Buffer.alloc(5 + count * PREFIX_BYTES);
  m.writeUInt8(Msg.INVENTORY, 0);
  m.writeUInt32BE(capacity, 1);
  for (let i = 0; i < count; i++) {
    m.writeUInt32BE(first + i, 5 + i * PREFIX_BYTES);
    m.writeUInt32BE(7, 9 + i * PREFIX_BYTES);
  }
  return m;
}

describe("readInventory", () => {
  it("keeps only what the mirror holds of an inventory longer than the claimed capacity", async () => {
    const { tx, rx } = await channels();
    const reading = readInventory(rx);
    for (let k = 0; k < 20; k++) await tx.send(inventory(64, k * 10_000, 10_000));
    await tx.send(Buffer.from([Msg.INVENTORY_END]));
    const mirror = await reading;
    expect(mirror.capacity).toBe(64);
    expect(mirror.size).toBe(64);
    // The newest prefixes are the ones kept, as the receiver's LRU cache would.
    expect(mirror.has(199_999, 7)).toBe(true);
    expect(mirror.has(0, 7)).toBe(false);
  });

  it("refuses an inventory whose capacity changes between messages", async () => {
    const { tx, rx } = await channels();
    const reading = readInventory(rx).catch((e) => e);
    await tx.send(inventory(8, 0, 4));
    await tx.send(inventory(9, 4, 4));
    expect(isNovaError(await reading, "NOVA_DWCP_PROTOCOL")).toBe(true);
  });
});

describe("a mirror shared by several streams", () => {
  it("lets each stream reference the inventory and its own pages, never another stream's", async () => {
    const { tx, rx } = await channels();
    const reading = readInventory(rx);
    await tx.send(inventory(16, 100, 2));
    await tx.send(Buffer.from([Msg.INVENTORY_END]));
    const mirror = await reading;
    const memory = mirror.forStream();
    const disk = mirror.forStream();
    // The inventory: in the cache before the session, safe for every stream.
    expect(memory.touch(100, 7)).toBe(true);
    expect(disk.has(101, 7)).toBe(true);
    // A page the memory stream sent may still be on its way when the disk stream's
    // reference to it would arrive: only the memory stream may reference it.
    memory.insert(5, 5);
    expect(memory.has(5, 5)).toBe(true);
    expect(memory.touch(5, 5)).toBe(true);
    expect(disk.has(5, 5)).toBe(false);
    expect(disk.touch(5, 5)).toBe(false);
    // The disk stream sends it too: it stays the memory stream's (the first copy).
    disk.insert(5, 5);
    expect(disk.touch(5, 5)).toBe(false);
    expect(memory.touch(5, 5)).toBe(true);
    // The unshared view of the mirror (one stream) sees everything.
    expect(mirror.has(5, 5)).toBe(true);
    // The memory stream ended verified: its pages are in the cache, for every stream.
    memory.release();
    expect(disk.touch(5, 5)).toBe(true);
  });
});
