import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isNovaError, type NovaError } from "../../lib/errors.js";
import { createOverlay, qemuImgInfo } from "../qemu/qemu-img.js";
import { ImageStore } from "./image-store.js";

/** The error `p` rejects with; fails the test when it resolves. */
async function rejection(p: Promise<unknown>): Promise<NovaError> {
  try {
    await p;
  } catch (err) {
    return err as NovaError;
  }
  throw new Error("expected the promise to reject");
}

const run = promisify(execFile);

let dir: string;
let store: ImageStore;

beforeEach(async () => {
  dir = await mkdtemp("/tmp/nc-qemu-store-unit-");
  store = new ImageStore(path.join(dir, "store"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

async function rawFile(name: string, bytes: number, fill = 7): Promise<{ file: string; data: Buffer }> {
  const data = Buffer.alloc(bytes, fill);
  const file = path.join(dir, name);
  await writeFile(file, data);
  return { file, data };
}

describe("ImageStore", () => {
  it("stores a raw disk under its SHA-256 with format and sizes, read-only", async () => {
    const { file, data } = await rawFile("disk.raw", 64 * 1024);
    const blob = await store.importFile(file, "disk");
    expect(blob).toEqual({
      digest: sha256(data),
      kind: "disk",
      sizeBytes: 64 * 1024,
      format: "raw",
      virtualSizeBytes: 64 * 1024,
    });
    const stored = store.pathOf(blob.digest);
    expect(path.basename(stored)).toBe(`sha256-${sha256(data).slice("sha256:".length)}`);
    expect((await stat(stored)).mode & 0o777).toBe(0o444);
    expect(await store.has(blob.digest)).toBe(true);
    expect(await store.list()).toEqual([blob]);
    expect(await store.verify(blob.digest)).toBe(true);
  });

  it("imports the same content twice without copying it again", async () => {
    const { file } = await rawFile("kernel", 4096, 1);
    const first = await store.importFile(file, "kernel");
    const before = await stat(store.pathOf(first.digest));
    const second = await store.importFile(file, "kernel");
    expect(second).toEqual(first);
    const after = await stat(store.pathOf(first.digest));
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await readdir(path.join(dir, "store", "tmp"))).toEqual([]);
    expect(await store.list()).toHaveLength(1);
  });

  it("records kernels and initrds without a disk format", async () => {
    const k = await store.importFile((await rawFile("vmlinuz", 100, 2)).file, "kernel");
    const i = await store.importFile((await rawFile("initrd", 200, 3)).file, "initrd");
    expect(k.format).toBeUndefined();
    expect(i).toMatchObject({ kind: "initrd", sizeBytes: 200 });
    expect((await store.list()).map((b) => b.kind).sort()).toEqual(["initrd", "kernel"]);
  });

  it("accepts a standalone qcow2 disk and records its virtual size", async () => {
    const file = path.join(dir, "disk.qcow2");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", file, "8M"]);
    const blob = await store.importFile(file, "disk");
    expect(blob).toMatchObject({ format: "qcow2", virtualSizeBytes: 8 * 1024 * 1024 });
  });

  it("refuses a qcow2 that has a backing file, naming the file", async () => {
    const { file: base } = await rawFile("base.raw", 64 * 1024);
    const overlay = path.join(dir, "overlay.qcow2");
    await createOverlay(base, "raw", overlay);
    const err = await rejection(store.importFile(overlay, "disk"));
    expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
    expect(err.message).toContain(overlay);
    expect(err.details).toMatchObject({ backingFile: base });
    expect(await store.list()).toEqual([]);
    expect(await readdir(path.join(dir, "store", "tmp"))).toEqual([]);
  });

  it("refuses a missing source with NOVA_NOT_FOUND naming the path", async () => {
    const missing = path.join(dir, "nope.qcow2");
    const err = await rejection(store.importFile(missing, "disk"));
    expect(isNovaError(err, "NOVA_NOT_FOUND")).toBe(true);
    expect(err.message).toContain(missing);
  });

  it("refuses the same content under a different kind", async () => {
    const { file } = await rawFile("blob", 512, 9);
    await store.importFile(file, "kernel");
    const err = await rejection(store.importFile(file, "initrd"));
    expect(isNovaError(err, "NOVA_CONFLICT")).toBe(true);
  });

  it("detects a blob whose content was altered after import", async () => {
    const { file } = await rawFile("k", 1024, 4);
    const blob = await store.importFile(file, "kernel");
    const stored = store.pathOf(blob.digest);
    await chmod(stored, 0o644);
    await writeFile(stored, Buffer.alloc(1024, 5));
    expect(await store.verify(blob.digest)).toBe(false);
  });

  it("refuses content whose digest is not the expected one and stores nothing", async () => {
    const { file } = await rawFile("pulled", 1024, 6);
    const expected = sha256(Buffer.alloc(1024, 9));
    const err = await rejection(store.importFile(file, "kernel", { expectedDigest: expected }));
    expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
    expect(err.message).toContain(expected);
    expect(await store.list()).toEqual([]);
    const blobs = await readdir(path.join(dir, "store", "blobs")).catch(() => []);
    expect(blobs).toEqual([]);
  });

  it("rejects malformed digests and reports unknown ones as absent", async () => {
    expect(() => store.pathOf("md5:abc")).toThrow(/Malformed blob digest/);
    const unknown = `sha256:${"0".repeat(64)}`;
    expect(await store.has(unknown)).toBe(false);
    expect(isNovaError(await store.verify(unknown).catch((e) => e), "NOVA_NOT_FOUND")).toBe(true);
  });
});

describe("qemu-img helpers", () => {
  it("creates an overlay that records its base and format, and refuses to overwrite it", async () => {
    const { file: base } = await rawFile("base.raw", 1024 * 1024);
    const overlay = path.join(dir, "vm.qcow2");
    await createOverlay(base, "raw", overlay, 4 * 1024 * 1024);
    expect(await qemuImgInfo(overlay)).toMatchObject({
      format: "qcow2",
      virtualSizeBytes: 4 * 1024 * 1024,
      backingFile: base,
    });
    const again = await rejection(createOverlay(base, "raw", overlay));
    expect(isNovaError(again, "NOVA_CONFLICT")).toBe(true);
  });

  it("refuses overlays smaller than the base, relative paths and a mismatched base format", async () => {
    const { file: base } = await rawFile("base.raw", 1024 * 1024);
    const small = await createOverlay(base, "raw", path.join(dir, "a.qcow2"), 4096).catch(
      (e: NovaError) => e,
    );
    expect(isNovaError(small, "NOVA_UNPROCESSABLE")).toBe(true);
    const relative = await createOverlay("base.raw", "raw", path.join(dir, "b.qcow2")).catch(
      (e: NovaError) => e,
    );
    expect(isNovaError(relative, "NOVA_UNPROCESSABLE")).toBe(true);
    const wrongFormat = await createOverlay(base, "qcow2", path.join(dir, "c.qcow2")).catch(
      (e: NovaError) => e,
    );
    expect(isNovaError(wrongFormat, "NOVA_UNPROCESSABLE")).toBe(true);
  });

  it("reports a missing image as NOVA_NOT_FOUND", async () => {
    const err = await rejection(qemuImgInfo(path.join(dir, "missing.qcow2")));
    expect(isNovaError(err, "NOVA_NOT_FOUND")).toBe(true);
  });
});
