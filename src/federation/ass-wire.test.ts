import { afterEach, describe, expect, it } from "vitest";
import { dialSession } from "../dwcp/amst/dial.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import { MAX_PULL_BYTES, readBatch, readHello, readPull, send } from "./ass-wire.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A channel pair over a real DWCP session on loopback. */
async function channels() {
  const listener = await DwcpListener.listen({ versions: [3] });
  cleanup.push(() => listener.close());
  const [client, server] = await Promise.all([
    dialSession({ port: listener.port, versions: [3] }),
    listener.accept(),
  ]);
  cleanup.push(
    () => client.destroy(),
    () => server.destroy(),
  );
  const a = client.openChannel("ass/1");
  await a.send(Buffer.from("{}")); // opens the channel on the far side
  const b = await server.accept();
  await b.read();
  return { a, b };
}

const ID = "00000000-0000-4000-8000-000000000001";

describe("ASS messages", () => {
  it("carries a hello, a pull and a batch", async () => {
    const { a, b } = await channels();
    await send(a, { type: "hello", protocol: 1, cluster: ID, name: "east" });
    expect(await readHello(b)).toMatchObject({ cluster: ID, name: "east" });
    await send(a, { type: "pull", vector: { [ID]: 3 }, waitMs: 100 });
    expect(await readPull(b)).toEqual({ type: "pull", vector: { [ID]: 3 }, waitMs: 100 });
    await send(b, { type: "batch", vector: { [ID]: 4 }, seq: 4, records: [], truncated: false, now: "x" });
    expect((await readBatch(a)).seq).toBe(4);
  });

  it("refuses another protocol version, naming both", async () => {
    const { a, b } = await channels();
    await send(a, { type: "hello", protocol: 2, cluster: ID, name: "east" });
    await expect(readHello(b)).rejects.toMatchObject({
      code: "NOVA_FED_PROTOCOL",
      details: { peer: 2, ours: 1 },
    });
  });

  it("refuses what breaks the schema, what is not JSON, and what is too big", async () => {
    const { a, b } = await channels();
    await send(a, { type: "pull", vector: { "not-a-uuid": 1 }, waitMs: 1 });
    await expect(readPull(b)).rejects.toMatchObject({ code: "NOVA_FED_PROTOCOL" });
    await a.send(Buffer.from("{nope"));
    await expect(readPull(b)).rejects.toMatchObject({ code: "NOVA_FED_PROTOCOL", message: /not JSON/ });
    await a.send(Buffer.alloc(MAX_PULL_BYTES + 1, 0x20));
    await expect(readPull(b)).rejects.toMatchObject({ code: "NOVA_FED_PROTOCOL", message: /at most/ });
  });

  it("turns the peer's refusal into its error code", async () => {
    const { a, b } = await channels();
    await send(b, { type: "error", code: "NOVA_FED_QUARANTINED", message: "east has quarantined you" });
    await expect(readBatch(a)).rejects.toMatchObject({
      code: "NOVA_FED_QUARANTINED",
      message: /quarantined you/,
    });
  });
});
