import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "../agent/free-port.js";
import { needsCa, neverConnected, normalizeServerList, pinnedFor } from "./server-urls.js";

describe("the CLI's --server list", () => {
  it("is kept in one spelling, so that a saved CA matches it again", () => {
    expect(normalizeServerList("https://cp1:7700/ , https://cp2:7700,https://cp1:7700")).toBe(
      "https://cp1:7700,https://cp2:7700",
    );
  });

  it("needs a pinned CA when any URL is https", () => {
    expect(needsCa("http://a:1,https://b:2")).toBe(true);
    expect(needsCa("http://a:1")).toBe(false);
  });

  it("lets a CA pinned for a list hold for any of its URLs, in any order, and for no other", () => {
    const saved = "https://cp1:7700,https://cp2:7700";
    expect(pinnedFor("https://cp2:7700/", saved)).toBe(true);
    expect(pinnedFor("https://cp2:7700, https://cp1:7700", saved)).toBe(true);
    expect(pinnedFor("https://cp3:7700", saved)).toBe(false);
    expect(pinnedFor("https://cp1:7700,https://cp3:7700", saved)).toBe(false);
    expect(pinnedFor("https://cp1:7700", "not a url")).toBe(false);
  });
});

describe("which failures another replica may take", () => {
  it("a refused connection: the request never left", async () => {
    // A port just freed: nothing listens there.
    const port = await freePort("127.0.0.1");
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
