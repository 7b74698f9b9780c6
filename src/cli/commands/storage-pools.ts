/** `novacron storage pool add|list|show|remove`: the shared directories HA VMs keep their disks in. */
import type { Command } from "commander";
import type { StoragePool, StoragePoolCreated, StoragePoolList } from "../../api/types/storage-pools.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";

function printPool(p: StoragePool): void {
  printFields([
    ["Name", p.name],
    ["ID", p.id],
    ["Path", p.path],
    ["Seen by", p.hosts.length > 0 ? p.hosts.join(", ") : "no host yet (is it mounted, with its marker?)"],
    ["VMs", p.vmCount],
    ["Created", p.createdAt],
  ]);
}

/** Registers `novacron storage pool …`. */
export function registerStorageCommands(program: Command): void {
  const storage = program.command("storage").description("Shared storage for VMs that survive their host");
  const pool = storage.command("pool").description("Storage pools: a directory every host mounts (e.g. NFS)");

  pool
    .command("add <name>")
    .description("Add a storage pool: a directory mounted at the same path on every host")
    .requiredOption("--path <dir>", "the directory, absolute, the same on every host")
    .action(async (name: string, o: { path: string }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const made = await api.post<StoragePoolCreated>("/v1/storage-pools", { name, path: o.path });
      if (json) return printJson(made);
      process.stdout.write(
        `Added storage pool ${made.storagePool.name} (${made.storagePool.id}) at ${made.storagePool.path}\n`,
      );
      if (!made.marker.written)
        process.stderr.write(
          `The server cannot see ${made.storagePool.path}: write the pool's marker on the shared storage yourself, so hosts recognise it:\n  echo ${made.marker.content} > ${made.marker.path}\n`,
        );
    });

  pool
    .command("list")
    .description("List storage pools and the hosts that see them")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { storagePools } = await api.get<StoragePoolList>("/v1/storage-pools");
      if (json) return printJson(storagePools);
      printTable(
        ["NAME", "PATH", "HOSTS", "VMS"],
        storagePools.map((p) => [p.name, p.path, p.hosts.join(",") || "-", p.vmCount]),
      );
    });

  pool
    .command("show <pool>")
    .description("Show a storage pool")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const p = await api.get<StoragePool>(`/v1/storage-pools/${seg(name)}`);
      if (json) return printJson(p);
      printPool(p);
    });

  pool
    .command("remove <pool>")
    .description("Remove a storage pool no VM uses (its directory and files are left as they are)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const p = await api.delete<StoragePool>(`/v1/storage-pools/${seg(name)}`);
      if (json) return printJson(p);
      process.stdout.write(`Removed storage pool ${p.name}\n`);
    });
}
