/** `novacron image list|show|import`. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import type { Image, ImageList, ImagesPost } from "../../api/types/images.js";
import { NovaError } from "../../lib/errors.js";
import { parsePositiveInt } from "../../lib/flags.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { formatBytes, printFields, printJson, printTable } from "../output.js";

interface ImportOptions {
  disk?: string;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  minMemory?: string;
  host?: string[];
  manifest?: string;
}

/** A guest image manifest as written by images/build.sh. */
interface GuestManifest {
  kernel: string;
  initrd: string;
  disk: string;
  cmdline: string;
  minMemoryMiB: number;
}

/** Turns the import flags (or a manifest) into the API body. */
export async function importBody(name: string, o: ImportOptions): Promise<ImagesPost> {
  const body: Partial<ImagesPost> & { name: string } = { name };
  if (o.manifest) {
    const file = path.resolve(o.manifest);
    let m: GuestManifest;
    try {
      m = JSON.parse(await readFile(file, "utf8")) as GuestManifest;
    } catch (err) {
      throw new NovaError("NOVA_CONFIG", `Cannot read image manifest ${file}: ${(err as Error).message}`);
    }
    const dir = path.dirname(file);
    Object.assign(body, {
      disk: path.resolve(dir, m.disk),
      kernel: path.resolve(dir, m.kernel),
      initrd: path.resolve(dir, m.initrd),
      cmdline: m.cmdline,
      minMemoryMiB: m.minMemoryMiB,
    });
  }
  if (o.disk) body.disk = path.resolve(o.disk);
  if (o.kernel) body.kernel = path.resolve(o.kernel);
  if (o.initrd) body.initrd = path.resolve(o.initrd);
  if (o.cmdline !== undefined) body.cmdline = o.cmdline;
  if (o.minMemory !== undefined) body.minMemoryMiB = parsePositiveInt(o.minMemory, "--min-memory");
  if (o.host && o.host.length > 0) body.hosts = o.host;
  if (!body.disk)
    throw new NovaError(
      "NOVA_CONFIG",
      "Give the image's disk: --disk PATH (or --manifest PATH from images/build.sh).",
    );
  return { ...body, disk: body.disk };
}

/** Registers the image commands. */
export function registerImageCommands(program: Command): void {
  const image = program.command("image").description("Manage VM images (base disk, optional kernel/initrd)");

  image
    .command("list")
    .description("List images and the hosts that hold them")
    .action(async (_o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { images } = await api.get<ImageList>("/v1/images");
      if (json) return printJson(images);
      printTable(
        ["NAME", "FORMAT", "SIZE", "BOOT", "MIN MEM", "HOSTS", "DISK DIGEST"],
        images.map((i) => [
          i.name,
          i.diskFormat,
          formatBytes(i.diskVirtualBytes),
          i.kernelDigest ? "kernel" : "disk",
          `${i.minMemoryMiB} MiB`,
          i.hosts.join(",") || "-",
          i.diskDigest.slice(0, 19),
        ]),
      );
    });

  image
    .command("show <image>")
    .description("Show one image")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const i = await api.get<Image>(`/v1/images/${seg(name)}`);
      if (json) return printJson(i);
      printFields([
        ["Name", i.name],
        ["ID", i.id],
        ["Disk", `${i.diskDigest} (${i.diskFormat}, ${formatBytes(i.diskVirtualBytes)})`],
        ["Kernel", i.kernelDigest],
        ["Initrd", i.initrdDigest],
        ["Cmdline", i.cmdline],
        ["Min memory", `${i.minMemoryMiB} MiB`],
        ["Hosts", i.hosts.join(", ")],
      ]);
    });

  image
    .command("import <name>")
    .description("Import files that exist on the hosts into their image stores (default: every live host)")
    .option("--disk <path>", "base disk (qcow2 or raw) on the host")
    .option("--kernel <path>", "kernel for direct kernel boot")
    .option("--initrd <path>", "initrd for direct kernel boot")
    .option("--cmdline <text>", "base kernel command line")
    .option("--min-memory <MiB>", "smallest memory a VM of this image may have")
    .option("--manifest <path>", "take disk/kernel/initrd/cmdline from an images/build.sh manifest.json")
    .option("--host <host...>", "import on these hosts only")
    .action(async (name: string, o: ImportOptions, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const body = await importBody(name, o);
      if (!json)
        process.stderr.write(`Importing ${name} on ${body.hosts?.join(", ") ?? "every live host"}...\n`);
      const i = await api.post<Image>("/v1/images", body);
      if (json) return printJson(i);
      process.stdout.write(
        `Imported image ${i.name} (${i.diskDigest.slice(0, 19)}) on ${i.hosts.join(", ")}\n`,
      );
    });
}
