/**
 * Image import: each target host's agent copies the files into its content-addressed
 * image store and reports digests; the image is recorded only when every host succeeded
 * and all hosts agree on the digests (the same path may hold different files on
 * different hosts). Blobs left on hosts by a failed import are harmless cache.
 */
import type { AgentBlob } from "../api/types/agent.js";
import type { ImagesPost } from "../api/types/images.js";
import { NovaError } from "../lib/errors.js";
import type { AgentConnector } from "./agent-client.js";
import { appendEvent } from "./store/events.js";
import { getHost, type HostRecord, listHosts } from "./store/hosts.js";
import { addImageLocation, findImage, getImage, type ImageRecord, insertImage } from "./store/images.js";
import type { Store } from "./store/store.js";

interface HostImport {
  host: HostRecord;
  disk: AgentBlob;
  kernel?: AgentBlob;
  initrd?: AgentBlob;
}

/** Image import. */
export class ImageService {
  constructor(
    private readonly store: Store,
    private readonly agents: AgentConnector,
  ) {}

  /** Imports files on hosts as a named image. */
  async import(input: ImagesPost): Promise<ImageRecord> {
    if (await findImage(this.store.read, input.name)) {
      throw new NovaError(
        "NOVA_CONFLICT",
        `An image named ${input.name} already exists. Pick another name.`,
        { details: { image: input.name } },
      );
    }
    if (input.initrd && !input.kernel) {
      throw new NovaError("NOVA_BAD_REQUEST", "An initrd needs a kernel: pass --kernel too.");
    }
    const hosts = await this.targetHosts(input.hosts);
    const results = await Promise.all(hosts.map((host) => this.importOn(host, input)));
    const first = results[0]!;
    for (const r of results.slice(1)) {
      for (const kind of ["disk", "kernel", "initrd"] as const) {
        if (r[kind]?.digest !== first[kind]?.digest) {
          throw new NovaError(
            "NOVA_UNPROCESSABLE",
            `The ${kind} file differs between hosts ${first.host.name} (${first[kind]?.digest}) and ${r.host.name} (${r[kind]?.digest}); import per host or make the files identical.`,
            { details: { kind, hosts: [first.host.name, r.host.name] } },
          );
        }
      }
    }
    const format = first.disk.format;
    if (format !== "qcow2" && format !== "raw") {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `Disk ${input.disk} is ${format ?? "of unknown format"}; NovaCron accepts qcow2 or raw.`,
      );
    }
    const id = await this.store.write(async (tx, emit) => {
      const imageId = await insertImage(tx, {
        name: input.name,
        diskDigest: first.disk.digest,
        diskFormat: format,
        diskVirtualBytes: first.disk.virtualSizeBytes ?? first.disk.sizeBytes,
        kernelDigest: first.kernel?.digest ?? null,
        initrdDigest: first.initrd?.digest ?? null,
        cmdline: input.cmdline ?? "",
        minMemoryMiB: input.minMemoryMiB ?? 64,
      });
      for (const r of results) await addImageLocation(tx, imageId, r.host.id);
      emit(
        await appendEvent(tx, {
          type: "image.imported",
          resourceType: "image",
          resourceId: imageId,
          data: { name: input.name, hosts: results.map((r) => r.host.name), diskDigest: first.disk.digest },
        }),
      );
      return imageId;
    });
    return getImage(this.store.read, id);
  }

  private async targetHosts(names: string[] | undefined): Promise<HostRecord[]> {
    if (names) {
      const hosts = await Promise.all(names.map((n) => getHost(this.store.read, n)));
      const dead = hosts.filter((h) => h.liveness !== "alive");
      if (dead.length > 0) {
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          `Cannot import on dead host(s): ${dead.map((h) => h.name).join(", ")}.`,
        );
      }
      return hosts;
    }
    const alive = (await listHosts(this.store.read)).filter((h) => h.liveness === "alive");
    if (alive.length === 0) {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "No live host to import the image on. Start an agent first (novacron agent --help).",
      );
    }
    return alive;
  }

  private async importOn(host: HostRecord, input: ImagesPost): Promise<HostImport> {
    const agent = this.agents.client(host);
    const disk = await agent.importBlob({ path: input.disk, kind: "disk" });
    const kernel = input.kernel ? await agent.importBlob({ path: input.kernel, kind: "kernel" }) : undefined;
    const initrd = input.initrd ? await agent.importBlob({ path: input.initrd, kind: "initrd" }) : undefined;
    return { host, disk, ...(kernel ? { kernel } : {}), ...(initrd ? { initrd } : {}) };
  }
}
