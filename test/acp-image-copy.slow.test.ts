// A VM moves to a cluster that lacks its image (docs/federation.md §10, "The image"): two
// servers peered, one agent each, the guest image imported on east only. The destination
// copies the image from the source host over DWCP while the prepare is answered `pending`,
// records it with the arriving VM, and the running guest arrives with its memory and disk
// intact. The copy's wire bytes are checked against the blobs' sizes: the first image
// costs about its size; a second image whose kernel differs from the first's by 2 MiB of
// appended bytes (and whose disk and initrd are the first's) costs a small fraction of it,
// its other pages crossing as references to west's page cache. A third one is copied
// across a kill of west's server in the middle of the copy.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, TestCluster } from "./helpers/cluster.js";
import { fetchEvents } from "./helpers/events.js";

const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "10"];
const WORKLOAD = "nc.pattern_seed=23 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";
const MiB = 1024 * 1024;
const serverFlags = (name: string) => ["--cluster-name", name, "--heartbeat-timeout", "6"];

interface ImageBody {
  name: string;
  hosts: string[];
  diskDigest: string;
}
interface Copied {
  name: string;
  host: string;
  logicalBytes: number;
  wireBytes: number;
  pages: number;
  pagesDeduplicated: number;
}

describe("a VM moves to a cluster that lacks its image", { timeout: 400_000 }, () => {
  let east!: TestCluster;
  let west!: TestCluster;
  let manifest!: string;
  let scratch!: string;

  beforeAll(async () => {
    manifest = await guestImageManifest();
    scratch = await mkdtemp(path.join(tmpdir(), "nc-image-copy-"));
    [east, west] = await Promise.all([TestCluster.create(18300), TestCluster.create(18310)]);
    const names = new Map([
      [east, "east"],
      [west, "west"],
    ]);
    await Promise.all([...names].map(([c, name]) => c.startServer(serverFlags(name))));
    await Promise.all([east.startAgent("e1", 18320, AGENT_FLAGS), west.startAgent("w1", 18330, AGENT_FLAGS)]);
    // Only east has the image; the two clusters peer through the REST API.
    const imported = await east.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(imported.code, imported.stderr).toBe(0);
    const token = await east.api<{ token: string }>("POST", "/v1/federation/tokens", {});
    expect(token.status).toBe(201);
    const added = await west.api("POST", "/v1/federation/peers", { token: token.body.token });
    expect(added.status, JSON.stringify(added.body)).toBe(201);
  }, 240_000);

  afterAll(async () => {
    await Promise.all([east?.destroy(), west?.destroy()]);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** The sizes of the blobs a manifest names. */
  async function blobBytes(file: string, kinds: ("disk" | "kernel" | "initrd")[]): Promise<number> {
    const m = JSON.parse(await readFile(file, "utf8")) as Record<string, string>;
    let total = 0;
    for (const k of kinds) total += (await stat(path.join(path.dirname(file), m[k]!))).size;
    return total;
  }

  /**
   * Imports on east an image `name` like the guest's: the same disk and initrd, a kernel
   * with 2 MiB of random bytes appended (an ELF loader reads only its segments, so it
   * boots as before). Returns its manifest.
   */
  async function similarImage(name: string): Promise<string> {
    const m = JSON.parse(await readFile(manifest, "utf8")) as Record<string, string>;
    const from = path.dirname(manifest);
    const dir = path.join(scratch, name);
    await mkdir(dir);
    for (const k of ["disk", "initrd"]) await symlink(path.join(from, m[k]!), path.join(dir, m[k]!));
    await copyFile(path.join(from, m.kernel!), path.join(dir, m.kernel!));
    await writeFile(path.join(dir, m.kernel!), randomBytes(2 * MiB), { flag: "a" });
    const file = path.join(dir, "manifest.json");
    await writeFile(file, JSON.stringify(m));
    const res = await east.cli(["image", "import", name, "--manifest", file]);
    expect(res.code, res.stderr).toBe(0);
    return file;
  }

  /** Creates `name` on east from `image`, lets its guest verify once, moves it to west and checks it arrived intact. */
  async function moveToWest(name: string, image: string): Promise<Copied> {
    const created = await east.api("POST", "/v1/vms", { name, image, memoryMiB: 256, kernelArgs: WORKLOAD });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await east.waitVmState(name, "running");
    await east.waitConsole(name, /NC-VERIFY PASS seed=23 .*round=1/);
    const res = await east.cli(["vm", "migrate", name, "--to-cluster", "west", "--follow"]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    await west.waitVmState(name, "running", 60_000);
    // The guest goes on verifying its memory and disk pattern on west, without a reboot.
    const rounds = (lines: string[]) =>
      Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=23 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
    const before = rounds(await east.console(name, 400).catch(() => []));
    await waitFor(async () => rounds(await west.console(name, 400)) > Math.max(1, before), {
      timeoutMs: 90_000,
      what: `${name} to verify its pattern on west`,
    });
    const lines = await west.console(name, 400);
    expect(lines.filter((l) => l.startsWith("NC-READY"))).toEqual([]);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
    const copied = (await fetchEvents(west, 0)).filter(
      (e) => e.type === "image.copied" && e.data.name === image,
    );
    expect(copied).toHaveLength(1);
    return copied[0]!.data as unknown as Copied;
  }

  it("copies the image to west over DWCP and the running VM arrives intact", async () => {
    const copied = await moveToWest("mover", "guest");
    // West now lists the image, on its host, under the source's name.
    const images = (await west.api<{ images: ImageBody[] }>("GET", "/v1/images")).body.images;
    expect(images.map((i) => ({ name: i.name, hosts: i.hosts }))).toEqual([{ name: "guest", hosts: ["w1"] }]);
    // Every blob crossed: its bytes are the blobs' sizes; the wire carried at most about as
    // much (zero pages and compressible pages less).
    const size = await blobBytes(manifest, ["disk", "kernel", "initrd"]);
    expect(copied).toMatchObject({ name: "guest", host: "w1", logicalBytes: size });
    expect(copied.wireBytes).toBeGreaterThan(0);
    expect(copied.wireBytes).toBeLessThan(size * 1.02);
    console.log(
      `image copy (cold): ${size} bytes of blobs, ${copied.wireBytes} on the wire (${((100 * copied.wireBytes) / size).toFixed(1)} %), ${copied.pagesDeduplicated}/${copied.pages} pages as references or zero`,
    );
  });

  it("copies a second, similar image for a fraction of its size", async () => {
    const v2 = await similarImage("guest-v2");

    const copied = await moveToWest("mover-2", "guest-v2");
    // Only the kernel was missing on west; of its pages only the appended ones crossed in full.
    const kernel = await blobBytes(v2, ["kernel"]);
    expect(copied).toMatchObject({ name: "guest-v2", host: "w1", logicalBytes: kernel });
    expect(copied.wireBytes).toBeLessThan(kernel / 10);
    expect(copied.wireBytes).toBeGreaterThan(2 * MiB);
    console.log(
      `image copy (similar): ${kernel} bytes of blobs, ${copied.wireBytes} on the wire (${((100 * copied.wireBytes) / kernel).toFixed(1)} %), ${copied.pagesDeduplicated}/${copied.pages} pages as references or zero`,
    );
  });

  it("goes on when the destination's server is killed while it copies the image", async () => {
    await similarImage("guest-v3");
    // West's server dies (as kill -9 would) right after it started the pull and before it
    // answered `pending`; it is started again, and the source's next delivery finds the
    // pull running or done on w1.
    await west.stop("server", "SIGKILL");
    const doomed = await west.startServer(serverFlags("west"), {
      env: { NOVACRON_FAILPOINTS: "acp.destination.image-pending=kill" },
    });
    const restarted = doomed.exited.then(() => west.startServer(serverFlags("west")));
    const copied = await moveToWest("mover-3", "guest-v3");
    await restarted;
    expect(copied).toMatchObject({ name: "guest-v3", host: "w1" });
    // Recorded once, on its one host, and nothing else half-recorded.
    const images = (await west.api<{ images: ImageBody[] }>("GET", "/v1/images")).body.images;
    expect(images.map((i) => [i.name, i.hosts])).toEqual([
      ["guest", ["w1"]],
      ["guest-v2", ["w1"]],
      ["guest-v3", ["w1"]],
    ]);
  });
});
