import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { haveOpenssl, makeTlsFixture } from "../../testing/tls-fixtures.js";
import { dialSession } from "./dial.js";
import { DwcpListener } from "./listen.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe.skipIf(!haveOpenssl())("DWCP over TLS 1.3", () => {
  const server = haveOpenssl() ? makeTlsFixture() : null;
  const client = haveOpenssl() ? makeTlsFixture("client.test") : null;

  it("carries a multi-stream session with mutual certificate checks", async () => {
    const listener = await DwcpListener.listen({
      tls: { cert: server!.cert, key: server!.key, ca: client!.ca, requestCert: true },
    });
    cleanup.push(() => listener.close());
    const [c, s] = await Promise.all([
      dialSession({
        port: listener.port,
        streams: 3,
        tls: { ca: server!.ca, cert: client!.cert, key: client!.key, servername: "dwcp.test" },
      }),
      listener.accept(),
    ]);
    cleanup.push(() => c.destroy());
    expect(s.streamCount).toBe(3);
    const tlsSocket = c.connectionSockets()[0] as import("node:tls").TLSSocket;
    expect(tlsSocket.getProtocol()).toBe("TLSv1.3");
    const rx = (async () => {
      const ch = await s.accept();
      const parts: Buffer[] = [];
      for await (const m of ch) parts.push(m);
      return Buffer.concat(parts).toString();
    })();
    const ch = c.openChannel("ctl");
    await ch.send(Buffer.from("over tls"));
    await ch.end();
    expect(await rx).toBe("over tls");
  });

  it("refuses a server whose certificate is not signed by the expected CA", async () => {
    const rogue = makeTlsFixture();
    const listener = await DwcpListener.listen({ tls: { cert: rogue.cert, key: rogue.key } });
    cleanup.push(() => listener.close());
    const err = await dialSession({
      port: listener.port,
      tls: { ca: server!.ca, servername: "dwcp.test" },
    }).catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(err.message).toMatch(/TLS/);
  });
});
