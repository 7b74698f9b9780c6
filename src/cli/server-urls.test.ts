import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { neverConnected, normalizeServerList, parseServerList } from "./server-urls.js";

describe("the CLI's --server list", () => {
  it("takes one URL or several, trimmed, without trailing slashes or repeats", () => {
    expect(parseServerList("https://cp1:7700/")).toEqual(["https://cp1:7700"]);
    expect(parseServerList(" https://cp1:7700, https://cp2:7700/ ,https://cp1:7700,")).toEqual([
      "https://cp1:7700",
      "https://cp2:7700",
    ]);
    expect(normalizeServerList("https://cp1:7700/ , https://cp2:7700")).toBe(
      "https://cp1:7700,https://cp2:7700",
    );
  });

  it("names the entry that is not a URL, with NOVA_CONFIG", () => {
    for (const bad of ["cp1:7700", "https://cp1:7700,ftp://x", ",", "https://cp1:7700,not a url"]) {
      let err: unknown;
      try {
        parseServerList(bad);
      } catch (e) {
        err = e;
      }
      expect(isNovaError(err, "NOVA_CONFIG"), bad).toBe(true);
    }
    expect(() => parseServerList("https://a:1,ftp://x")).toThrow(/"ftp:\/\/x" is not a URL/);
  });
});

describe("which failures another replica may take", () => {
  it("a refused connection: the request never left", async () => {
    // A port just freed: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const err = await fetch(`http://127.0.0.1:${port}/`).catch((e: unknown) => e);
    expect(neverConnected(err)).toBe(true);
  });

  it("a connection cut after the request was sent: it may have been taken", async () => {
    const server = createServer((socket) => socket.once("data", () => socket.destroy()));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as { port: number };
      const err = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "{}" }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(neverConnected(err)).toBe(false);
    } finally {
      server.close();
    }
  });

  it("a certificate refused during the handshake, in the codes and in the identity check's words", () => {
    const wrap = (cause: unknown) => Object.assign(new TypeError("fetch failed"), { cause });
    expect(
      neverConnected(wrap(Object.assign(new Error("x"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }))),
    ).toBe(true);
    expect(
      neverConnected(wrap(Object.assign(new Error("x"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" }))),
    ).toBe(true);
    expect(
      neverConnected(wrap(new Error("the peer is not the NovaCron server (its certificate must name x)"))),
    ).toBe(true);
    const hungUp = "Client network socket disconnected before secure TLS connection was established";
    expect(neverConnected(wrap(Object.assign(new Error(hungUp), { code: "ECONNRESET" })))).toBe(true);
    expect(neverConnected(wrap(Object.assign(new Error("x"), { code: "ECONNRESET" })))).toBe(false);
    expect(neverConnected(new Error("something else"))).toBe(false);
  });
});
