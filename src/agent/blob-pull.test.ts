import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImageStore } from "../compute/images/image-store.js";
import { isNovaError } from "../lib/errors.js";
import { pullBlob } from "./blob-pull.js";

const served = Buffer.alloc(4096, 3);
let dir: string;
let server: Server;
let url: string;

beforeEach(async () => {
  dir = await mkdtemp("/tmp/nc-blob-pull-unit-");
  server = createServer((_req, res) => res.end(served));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

describe("pullBlob", () => {
  it("stores a download whose content has the requested digest", async () => {
    const store = new ImageStore(path.join(dir, "store"));
    const blob = await pullBlob(store, path.join(dir, "tmp"), {
      digest: sha256(served),
      kind: "kernel",
      url,
    });
    expect(blob.digest).toBe(sha256(served));
    expect((await store.list()).map((b) => b.digest)).toEqual([sha256(served)]);
  });

  it("refuses a download with another digest and leaves nothing in the store or the temp dir", async () => {
    const store = new ImageStore(path.join(dir, "store"));
    const expected = sha256(Buffer.alloc(4096, 4));
    const err = await pullBlob(store, path.join(dir, "tmp"), { digest: expected, kind: "kernel", url }).catch(
      (e: unknown) => e,
    );
    expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
    expect((err as Error).message).toContain(expected);
    expect(await store.list()).toEqual([]);
    expect(await store.has(sha256(served))).toBe(false);
    expect(await readdir(path.join(dir, "store", "blobs")).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(dir, "tmp"))).toEqual([]);
  });
});

describe("pullBlob's bound", () => {
  let big: Server;
  let bigUrl: string;
  let declare = false;
  beforeEach(async () => {
    big = createServer((_req, res) => {
      // 64 MiB, with or without Content-Length.
      res.writeHead(200, declare ? { "content-length": String(64 * 1024 * 1024) } : {});
      let left = 1024;
      const pump = () => {
        while (left-- > 0) if (!res.write(Buffer.alloc(64 * 1024, 7))) return void res.once("drain", pump);
        res.end();
      };
      res.on("close", () => {
        left = 0;
      });
      pump();
    });
    await new Promise<void>((resolve) => big.listen(0, "127.0.0.1", resolve));
    bigUrl = `http://127.0.0.1:${(big.address() as AddressInfo).port}/blob`;
  });
  afterEach(async () => {
    big.closeAllConnections();
    await new Promise<void>((resolve) => big.close(() => resolve()));
  });

  it.each([false, true])(
    "refuses a download larger than the size its holder reported (Content-Length declared: %s) and keeps nothing",
    async (withLength) => {
      declare = withLength;
      const store = new ImageStore(path.join(dir, "store"));
      const digest = sha256(served);
      const err = await pullBlob(store, path.join(dir, "tmp"), {
        digest,
        kind: "disk",
        url: bigUrl,
        sizeBytes: 4096,
      }).catch((e: unknown) => e);
      expect(isNovaError(err, "NOVA_REPLY_TOO_LARGE")).toBe(true);
      expect((err as { details: Record<string, unknown> }).details).toMatchObject({
        limitBytes: 4096,
        digest,
      });
      expect(await store.list()).toEqual([]);
      expect(await readdir(path.join(dir, "tmp"))).toEqual([]);
    },
  );

  it("bounds a download by maxBytes when no size is given", async () => {
    declare = false;
    const store = new ImageStore(path.join(dir, "store"));
    const err = await pullBlob(
      store,
      path.join(dir, "tmp"),
      { digest: sha256(served), kind: "disk", url: bigUrl },
      fetch,
      { maxBytes: 1024 * 1024 },
    ).catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_REPLY_TOO_LARGE")).toBe(true);
    expect(await readdir(path.join(dir, "tmp"))).toEqual([]);
  });
});
