/**
 * `npm run bench:image-copy`: what copying an image to another cluster costs on the wire
 * (docs/federation.md §10, "The image"). Two agents' DWCP transports in this process, each
 * with its own cluster CA, image store and page cache, over loopback: the source offers
 * an image's blobs, the destination pulls them (the real offer and pull code: HDE page
 * streams, mutual TLS, digest check). Cases, in order, on one destination host:
 *
 *   synthetic-cold      a 256 MiB raw disk (30 % zero, 40 % text, 30 % random pages), cache cold
 *   synthetic-similar   its second version: 4 MiB of pages (1/64) rewritten in part
 *   synthetic-held      the first version again: the store holds it, nothing crosses
 *   guest-cold          the guest image (images/build.sh: disk, kernel, initrd)
 *   guest-v2            its kernel with 2 MiB of random bytes appended (disk, initrd held)
 *
 * Prints blob bytes fetched, wire bytes (HDE messages), their ratio, pages sent as
 * references or zero, and wall time; medians of `--runs` (each run on fresh hosts).
 *
 *   --runs N   repetitions (default 3)
 *   --json     one JSON object per line: case, run, logical_bytes, wire_bytes, pages,
 *              pages_deduplicated, wall_s
 */
import { randomBytes, randomUUID } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pino from "pino";
import { AgentDwcp } from "../src/agent/dwcp-transport.js";
import { type BlobKind, ImageStore } from "../src/compute/images/image-store.js";
import { guestImageManifest } from "../src/demo/local-cluster.js";
import { createCa, HOST_IDENTITY_PREFIX, issueWithNewKey } from "../src/security/pki.js";
import { SyntheticImage } from "../src/testing/synthetic-image.js";
import { median, printTable } from "./table.js";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "3" }, json: { type: "boolean", default: false } },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
const MiB = 1024 * 1024;
const log = pino({ level: "silent" });

interface Result {
  case: string;
  run: number;
  logical_bytes: number;
  wire_bytes: number;
  pages: number;
  pages_deduplicated: number;
  wall_s: number;
}

/** A host of a fresh cluster: its DWCP transport and image store. */
async function host(dir: string, name: string) {
  const ca = await createCa(`${name}-ca`);
  const leaf = await issueWithNewKey(ca, {
    commonName: name,
    uris: [`${HOST_IDENTITY_PREFIX}${randomUUID()}`],
    names: [`${name}.test`, "127.0.0.1"],
  });
  const dataDir = path.join(dir, name);
  const images = new ImageStore(path.join(dataDir, "images"));
  const dwcp = await AgentDwcp.start({
    dataDir,
    host: "127.0.0.1",
    log,
    tls: { ca: ca.certPem, cert: leaf.certPem, key: leaf.keyPem },
    images,
  });
  return { ca: ca.certPem, dwcp, images };
}

/** Writes a synthetic image to `file`, a chunk at a time. */
function writeSynthetic(file: string, img: SyntheticImage): void {
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(256 * 4096);
  try {
    for (let first = 0; first * 4096 < img.bytes; first += 256) writeSync(fd, img.read(first, chunk));
  } finally {
    closeSync(fd);
  }
}

async function run(n: number): Promise<Result[]> {
  const dir = mkdtempSync(path.join(tmpdir(), "nc-bench-image-copy-"));
  const src = await host(dir, "src");
  const dst = await host(dir, "dst");
  const results: Result[] = [];
  const copy = async (name: string, blobs: { file: string; kind: BlobKind }[]) => {
    const digests: string[] = [];
    for (const b of blobs) digests.push((await src.images.importFile(b.file, b.kind)).digest);
    const id = randomUUID();
    const t0 = performance.now();
    const offer = await src.dwcp.offerImage(id, digests, dst.ca, 600_000);
    dst.dwcp.pullImage({
      id,
      endpoint: offer.endpoint,
      token: offer.token,
      peerCaPem: src.ca,
      blobs: offer.blobs,
    });
    const st = (await dst.dwcp.imagePulls!.settled(id))!;
    if (st.state !== "done") throw new Error(`${name}: ${st.code} ${st.message}`);
    results.push({
      case: name,
      run: n,
      logical_bytes: st.logicalBytes,
      wire_bytes: st.wireBytes,
      pages: st.pages,
      pages_deduplicated: st.pagesDeduplicated,
      wall_s: (performance.now() - t0) / 1000,
    });
  };
  try {
    const pages = (256 * MiB) / 4096;
    const v1 = path.join(dir, "synthetic-v1.raw");
    const v2 = path.join(dir, "synthetic-v2.raw");
    writeSynthetic(v1, new SyntheticImage({ pages, seed: 5 }));
    writeSynthetic(v2, new SyntheticImage({ pages, seed: 5, changedFraction: 1 / 64 }));
    await copy("synthetic-cold", [{ file: v1, kind: "disk" }]);
    await copy("synthetic-similar", [{ file: v2, kind: "disk" }]);
    await copy("synthetic-held", [{ file: v1, kind: "disk" }]);

    const manifest = await guestImageManifest();
    const m = JSON.parse(readFileSync(manifest, "utf8")) as Record<string, string>;
    const of = (k: string) => path.join(path.dirname(manifest), m[k]!);
    const guest = [
      { file: of("disk"), kind: "disk" as const },
      { file: of("kernel"), kind: "kernel" as const },
      { file: of("initrd"), kind: "initrd" as const },
    ];
    await copy("guest-cold", guest);
    const kernel2 = path.join(dir, "vmlinuz-v2");
    copyFileSync(of("kernel"), kernel2);
    appendFileSync(kernel2, randomBytes(2 * MiB));
    await copy("guest-v2", [guest[0]!, { file: kernel2, kind: "kernel" }, guest[2]!]);
  } finally {
    await src.dwcp.close();
    await dst.dwcp.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

const all: Result[] = [];
for (let i = 1; i <= runs; i++) {
  const r = await run(i);
  all.push(...r);
  if (values.json) for (const x of r) console.log(JSON.stringify(x));
}
if (!values.json) {
  const cases = [...new Set(all.map((r) => r.case))];
  const med = (c: string, f: (r: Result) => number) => median(all.filter((r) => r.case === c).map(f)) ?? 0;
  printTable(
    ["case", "blob MiB", "wire MiB", "wire/blob", "pages ref+zero", "wall s"],
    cases.map((c) => {
      const logical = med(c, (r) => r.logical_bytes);
      const wire = med(c, (r) => r.wire_bytes);
      return [
        c,
        (logical / MiB).toFixed(1),
        (wire / MiB).toFixed(2),
        logical ? `${((100 * wire) / logical).toFixed(1)} %` : "-",
        `${med(c, (r) => r.pages_deduplicated)}/${med(c, (r) => r.pages)}`,
        med(c, (r) => r.wall_s).toFixed(2),
      ];
    }),
  );
  console.log(`medians of ${runs} run(s)`);
}
process.exit(0);
