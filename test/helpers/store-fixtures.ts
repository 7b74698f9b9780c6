/** Rows the store suites need around the one they test: a host, an image, a VM. */

import type { Queryable } from "../../src/cluster/store/db.js";
import { upsertHost } from "../../src/cluster/store/hosts.js";
import { getImage, insertImage } from "../../src/cluster/store/images.js";
import { insertVm } from "../../src/cluster/store/vms.js";
import { QEMU_10_0_2 } from "../../src/lib/qemu-info.test-util.js";

/** A small TCG host's capacity. */
export const TEST_CAPACITY = {
  accel: "tcg" as const,
  accelReason: "test",
  vcpus: 2,
  memoryMiB: 4096,
  diskTotalBytes: 1e10,
  diskFreeBytes: 5e9,
};

/** Registers host `name` (no certificate); returns its id. */
export async function addHost(q: Queryable, name: string): Promise<string> {
  const h = await upsertHost(q, {
    name,
    agentUrl: "http://127.0.0.1:1",
    certificate: null,
    agentVersion: "0",
    capacity: TEST_CAPACITY,
  });
  return h.id;
}

/** A live host whose agent reported QEMU 10.0.2 (schedulable), with `memoryMiB` of memory. */
export async function addLiveHost(q: Queryable, name: string, memoryMiB = 4096): Promise<string> {
  const h = await upsertHost(q, {
    name,
    agentUrl: "http://127.0.0.1:1",
    certificate: null,
    agentVersion: "0",
    capacity: { ...TEST_CAPACITY, memoryMiB },
    qemu: QEMU_10_0_2,
  });
  return h.id;
}

/** A test image's fields besides its name and disk digest. */
export const TEST_IMAGE = {
  diskFormat: "qcow2" as const,
  diskVirtualBytes: 1 << 26,
  kernelDigest: null,
  initrdDigest: null,
  cmdline: "",
  minMemoryMiB: 64,
};

/** Records image `name`; returns its id. */
export async function addImage(q: Queryable, name: string): Promise<string> {
  await insertImage(q, { name, diskDigest: "sha256:d", ...TEST_IMAGE });
  return (await getImage(q, name)).id;
}

/** Records a 64 MiB VM scheduled on `hostId`; returns its id. */
export async function addVm(q: Queryable, name: string, imageId: string, hostId: string): Promise<string> {
  const { id } = await insertVm(q, {
    name,
    imageId,
    vcpus: 1,
    memoryMiB: 64,
    kernelArgs: "",
    desiredState: "running",
    hostId,
    state: "scheduled",
  });
  return id;
}
