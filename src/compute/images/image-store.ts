/**
 * A host's content-addressed blob store for disk images, kernels and initrds. Blobs are
 * named by SHA-256 (`blobs/sha256-<hex>`), written via temp file + fsync + rename so a
 * crash never leaves a half-written blob under a real name, made read-only (VMs write to
 * qcow2 overlays, never to a base), and described by `blobs/sha256-<hex>.json`.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isNovaError, NovaError } from "../../lib/errors.js";
import { Reverter } from "../../lib/revert.js";
import { qemuImgInfo } from "../qemu/qemu-img.js";

/** What a blob holds. */
export type BlobKind = "disk" | "kernel" | "initrd";

/** A blob's metadata, as stored next to it. */
export interface StoredBlob {
  /** "sha256:<hex>" of the content. */
  digest: string;
  kind: BlobKind;
  sizeBytes: number;
  /** Disk blobs only: the format detected at import; QEMU is always told it explicitly. */
  format?: "qcow2" | "raw";
  /** Disk blobs only: the size the guest sees. */
  virtualSizeBytes?: number;
}

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;
const BLOB_KINDS: readonly BlobKind[] = ["disk", "kernel", "initrd"];

function hexOf(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) {
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `Malformed blob digest "${digest}": expected sha256:<64 hex digits>`,
      {
        details: { digest },
      },
    );
  }
  return m[1]!;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** Streams a file through SHA-256; returns the digest and byte count. */
async function hashFile(file: string): Promise<{ digest: string; sizeBytes: number }> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest("hex")}`, sizeBytes };
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A content-addressed store of image blobs in one directory. */
export class ImageStore {
  private readonly blobsDir: string;
  private readonly tmpDir: string;

  /** `dir` is created on first import. */
  constructor(readonly dir: string) {
    this.blobsDir = path.join(dir, "blobs");
    this.tmpDir = path.join(dir, "tmp");
  }

  /** The path of a blob's content (whether or not it exists). */
  pathOf(digest: string): string {
    return path.join(this.blobsDir, `sha256-${hexOf(digest)}`);
  }

  private metaPathOf(digest: string): string {
    return `${this.pathOf(digest)}.json`;
  }

  /** True when both the blob and its metadata are present. */
  async has(digest: string): Promise<boolean> {
    return (await this.readMeta(digest)) !== undefined && (await exists(this.pathOf(digest)));
  }

  /**
   * Imports a file: hashes it, and when the content is new copies it into the store while
   * re-hashing (a source that changes mid-import is refused), fsyncs, validates disk images
   * with qemu-img, and renames into place. Importing known content copies nothing.
   * With `expectedDigest` (a pulled blob), content with any other digest is refused with
   * NOVA_UNPROCESSABLE before anything is written to the store.
   */
  async importFile(
    srcPath: string,
    kind: BlobKind,
    opts: { expectedDigest?: string } = {},
  ): Promise<StoredBlob> {
    if (!BLOB_KINDS.includes(kind)) {
      throw new NovaError("NOVA_BAD_REQUEST", `Unknown blob kind "${kind}"`, { details: { kind } });
    }
    let srcStat: Awaited<ReturnType<typeof stat>>;
    try {
      srcStat = await stat(srcPath);
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        throw new NovaError("NOVA_NOT_FOUND", `Failed importing ${srcPath}: file does not exist`, {
          details: { path: srcPath },
        });
      }
      throw err;
    }
    if (!srcStat.isFile()) {
      throw new NovaError("NOVA_UNPROCESSABLE", `Failed importing ${srcPath}: not a regular file`, {
        details: { path: srcPath },
      });
    }

    // Hash first: re-importing known content (the common case) then writes nothing.
    const { digest } = await hashFile(srcPath);
    if (opts.expectedDigest !== undefined && digest !== opts.expectedDigest) {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `Failed importing ${srcPath}: its digest is ${digest}, expected ${opts.expectedDigest}; nothing was stored`,
        { details: { path: srcPath, expected: opts.expectedDigest, actual: digest } },
      );
    }
    const known = await this.readMeta(digest);
    if (known && (await exists(this.pathOf(digest)))) {
      if (known.kind !== kind) {
        throw new NovaError(
          "NOVA_CONFLICT",
          `Failed importing ${srcPath}: the same content is already stored as ${known.kind}, not ${kind}`,
          { details: { path: srcPath, digest, storedKind: known.kind } },
        );
      }
      return known;
    }

    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    const revert = new Reverter();
    const tmp = path.join(this.tmpDir, `import-${randomBytes(8).toString("hex")}`);
    revert.add(() => rm(tmp, { force: true }));
    try {
      const copied = await this.copyHashing(srcPath, tmp);
      // Also covers a source that changed after hashing into the expected digest.
      if (copied.digest !== digest) {
        throw new NovaError(
          "NOVA_CONFLICT",
          `Failed importing ${srcPath}: the file changed while being imported`,
          {
            details: { path: srcPath },
          },
        );
      }
      const blob: StoredBlob = { digest, kind, sizeBytes: copied.sizeBytes };
      if (kind === "disk") Object.assign(blob, await validateDisk(tmp, srcPath));
      await chmod(tmp, 0o444);
      await rename(tmp, this.pathOf(digest));
      await this.writeMeta(blob);
      await fsyncDir(this.blobsDir);
      revert.success();
      return blob;
    } catch (err) {
      await revert.fail();
      throw err;
    }
  }

  /** Every blob with metadata, sorted by digest. */
  async list(): Promise<StoredBlob[]> {
    let names: string[];
    try {
      names = await readdir(this.blobsDir);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw err;
    }
    const blobs: StoredBlob[] = [];
    for (const name of names.filter((n) => /^sha256-[0-9a-f]{64}\.json$/.test(n)).sort()) {
      const digest = `sha256:${name.slice("sha256-".length, -".json".length)}`;
      const meta = await this.readMeta(digest);
      if (meta && (await exists(this.pathOf(digest)))) blobs.push(meta);
    }
    return blobs;
  }

  /** Re-hashes a stored blob; false when its content no longer matches its name or size. */
  async verify(digest: string): Promise<boolean> {
    const meta = await this.readMeta(digest);
    let actual: { digest: string; sizeBytes: number };
    try {
      actual = await hashFile(this.pathOf(digest));
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        throw new NovaError("NOVA_NOT_FOUND", `Blob ${digest} is not in the store`, { details: { digest } });
      }
      throw err;
    }
    return actual.digest === digest && (meta === undefined || meta.sizeBytes === actual.sizeBytes);
  }

  private async copyHashing(src: string, dest: string): Promise<{ digest: string; sizeBytes: number }> {
    const hash = createHash("sha256");
    let sizeBytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(createReadStream(src), tap, createWriteStream(dest, { mode: 0o600 }));
    const handle = await open(dest, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    return { digest: `sha256:${hash.digest("hex")}`, sizeBytes };
  }

  private async readMeta(digest: string): Promise<StoredBlob | undefined> {
    try {
      return JSON.parse(await readFile(this.metaPathOf(digest), "utf8")) as StoredBlob;
    } catch (err) {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    }
  }

  private async writeMeta(blob: StoredBlob): Promise<void> {
    const tmp = path.join(this.tmpDir, `meta-${randomBytes(8).toString("hex")}`);
    const handle = await open(tmp, "w", 0o444);
    try {
      await handle.writeFile(`${JSON.stringify(blob, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.metaPathOf(blob.digest));
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** qcow2 or raw only, and no backing file: a stored base must be self-contained. */
async function validateDisk(
  file: string,
  srcPath: string,
): Promise<Pick<StoredBlob, "format" | "virtualSizeBytes">> {
  let info: Awaited<ReturnType<typeof qemuImgInfo>>;
  try {
    info = await qemuImgInfo(file);
  } catch (err) {
    if (isNovaError(err, "NOVA_UNPROCESSABLE")) {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `Failed importing ${srcPath}: not a readable disk image (${err.message})`,
        {
          details: { path: srcPath },
          cause: err,
        },
      );
    }
    throw err;
  }
  if (info.format !== "qcow2" && info.format !== "raw") {
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `Failed importing ${srcPath}: disk images must be qcow2 or raw, this one is ${info.format}`,
      { details: { path: srcPath, format: info.format } },
    );
  }
  if (info.backingFile !== undefined) {
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `Failed importing ${srcPath}: it is a qcow2 overlay on ${info.backingFile}; import a standalone image (qemu-img convert)`,
      { details: { path: srcPath, backingFile: info.backingFile } },
    );
  }
  return { format: info.format, virtualSizeBytes: info.virtualSizeBytes };
}
