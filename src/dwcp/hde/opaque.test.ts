import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { dialSession } from "../amst/dial.js";
import { DwcpListener } from "../amst/listen.js";
import { OpaqueSender, readOpaque } from "./opaque.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe("opaque streams", () => {
  it("round-trip text and random data, compressing only what shrinks", async () => {
    const listener = await DwcpListener.listen();
    cleanup.push(() => listener.close());
    const [client, server] = await Promise.all([dialSession({ port: listener.port }), listener.accept()]);
    cleanup.push(() => client.destroy());
    const text = Buffer.from("disk block with a log line in it\n".repeat(200_000));
    const noise = randomBytes(8 * 1024 * 1024);
    const rx = (async () => {
      const h = createHash("sha256");
      let n = 0;
      for await (const chunk of readOpaque(await server.accept())) {
        h.update(chunk);
        n += chunk.length;
      }
      return { digest: h.digest("hex"), n };
    })();
    const tx = new OpaqueSender(client.openChannel("disk"), 3);
    await tx.write(text);
    await tx.write(noise);
    await tx.end();
    const want = createHash("sha256").update(text).update(noise).digest("hex");
    expect(await rx).toEqual({ digest: want, n: text.length + noise.length });
    // Text shrinks a lot, noise is sent as is (plus 6 bytes a chunk): far less than the input.
    expect(tx.bytesOut).toBeLessThan(noise.length + text.length / 10);
  });
});
