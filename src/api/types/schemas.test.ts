import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { QEMU_10_0_2 } from "../../lib/qemu-info.test-util.js";
import { MACHINE_TYPE_PATTERN } from "../../lib/qemu-support.js";
import { AgentHeartbeatPost, AgentRegisterPost, AgentVmPut, QemuInfo } from "./agent.js";
import { HostCordonPost } from "./hosts.js";
import { ImagesPost } from "./images.js";
import { VmsPost } from "./vms.js";

// Fastify's Ajv validates formats itself; TypeBox's checker needs them registered.
FormatRegistry.Set("uuid", (v) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v));

const firstError = (schema: Parameters<typeof Value.Errors>[0], value: unknown) =>
  [...Value.Errors(schema, value)][0];

describe("API schemas", () => {
  it("accept a minimal VM create and reject bad names, sizes and unknown fields", () => {
    expect(Value.Check(VmsPost, { name: "web-1", image: "guest" })).toBe(true);
    expect(firstError(VmsPost, { name: "Web_1", image: "guest" })?.path).toBe("/name");
    expect(firstError(VmsPost, { name: "-web", image: "guest" })?.path).toBe("/name");
    expect(firstError(VmsPost, { name: "web", image: "guest", memoryMiB: 8 })?.path).toBe("/memoryMiB");
    expect(firstError(VmsPost, { name: "web", image: "guest", vcpus: 0 })?.path).toBe("/vcpus");
    expect(Value.Check(VmsPost, { name: "web", image: "guest", color: "red" })).toBe(false);
    expect(Value.Check(VmsPost, { name: "a".repeat(64), image: "guest" })).toBe(false);
  });

  it("fill the documented defaults for a VM create", () => {
    const filled = Value.Default(VmsPost, { name: "web", image: "guest" }) as Record<string, unknown>;
    expect(filled).toMatchObject({ vcpus: 1, memoryMiB: 256, start: true });
  });

  it("require absolute paths for image imports", () => {
    expect(Value.Check(ImagesPost, { name: "guest", disk: "/var/img/disk.qcow2" })).toBe(true);
    expect(firstError(ImagesPost, { name: "guest", disk: "disk.qcow2" })?.path).toBe("/disk");
    expect(firstError(ImagesPost, { name: "guest", disk: "/d", hosts: [] })?.path).toBe("/hosts");
  });

  it("check the agent protocol's power states and heartbeat shape", () => {
    const put = {
      name: "vm1",
      generation: 1,
      vcpus: 1,
      memoryMiB: 128,
      kernelArgs: "",
      image: {
        diskDigest: "sha256:x",
        diskFormat: "qcow2",
        kernelDigest: null,
        initrdDigest: null,
        cmdline: "",
      },
      power: "running",
      fence: { owner: "00000000-0000-4000-8000-0000000000c1", epoch: 1 },
    };
    expect(Value.Check(AgentVmPut, put)).toBe(true);
    expect(Value.Check(AgentVmPut, { ...put, power: "paused" })).toBe(false);
    // Every power request carries the VM's fencing token, at an epoch of at least 1.
    const { fence: _f, ...unfenced } = put;
    expect(Value.Check(AgentVmPut, unfenced)).toBe(false);
    expect(Value.Check(AgentVmPut, { ...put, fence: { ...put.fence, epoch: 0 } })).toBe(false);
    const beat = {
      agentUrl: "http://127.0.0.1:7800",
      capacity: {
        accel: "tcg",
        accelReason: "",
        vcpus: 2,
        memoryMiB: 1024,
        diskTotalBytes: 1,
        diskFreeBytes: 1,
      },
      vms: [
        { id: "00000000-0000-4000-8000-000000000001", generation: 1, state: "running", reason: "", pid: 42 },
      ],
      imageDigests: [],
    };
    expect(Value.Check(AgentHeartbeatPost, beat)).toBe(true);
    expect(Value.Check(AgentHeartbeatPost, { ...beat, agentUrl: "ftp://x" })).toBe(false);
    expect(Value.Check(AgentHeartbeatPost, { ...beat, qemu: QEMU_10_0_2 })).toBe(true);
    expect(Value.Check(AgentVmPut, { ...put, machineType: "pc-q35-7.2" })).toBe(true);
    expect(Value.Check(AgentVmPut, { ...put, machineType: "q35,accel=kvm" })).toBe(false);
  });

  it("carry the agent's QEMU at registration, and a pinned machine type at VM create", () => {
    expect(Value.Check(QemuInfo, QEMU_10_0_2)).toBe(true);
    expect(firstError(QemuInfo, { ...QEMU_10_0_2, machineTypes: ["pc-i440fx-10.0"] })?.path).toBe(
      "/machineTypes/0",
    );
    expect(firstError(QemuInfo, { ...QEMU_10_0_2, version: "10" })?.path).toBe("/version");
    expect(Value.Check(QemuInfo, { ...QEMU_10_0_2, extra: 1 })).toBe(false);
    const reg = {
      name: "h1",
      csr: "-----BEGIN CERTIFICATE REQUEST-----",
      agentUrl: "http://127.0.0.1:7800",
      agentVersion: "0.1.0",
      capacity: {
        accel: "tcg",
        accelReason: "",
        vcpus: 2,
        memoryMiB: 1024,
        diskTotalBytes: 1,
        diskFreeBytes: 1,
      },
    };
    // Optional in the schema: the host service refuses a registration without it, by name.
    expect(Value.Check(AgentRegisterPost, reg)).toBe(true);
    expect(Value.Check(AgentRegisterPost, { ...reg, qemu: QEMU_10_0_2 })).toBe(true);
    expect(Value.Check(VmsPost, { name: "web", image: "guest", machineType: "pc-q35-7.2" })).toBe(true);
    expect(Value.Check(VmsPost, { name: "web", image: "guest", machineType: "q35" })).toBe(true);
    for (const bad of ["q35,accel=kvm", "pc-i440fx-7.2", "pc-q35-4.0.1", ""])
      expect(firstError(VmsPost, { name: "web", image: "guest", machineType: bad })?.path).toBe(
        "/machineType",
      );
  });

  it("use lib/qemu-support's machine type pattern (api/types imports nothing of ours)", () => {
    expect(VmsPost.properties.machineType.pattern).toBe(MACHINE_TYPE_PATTERN);
    expect(AgentVmPut.properties.machineType.pattern).toBe(MACHINE_TYPE_PATTERN);
  });

  it("default a cordon request to cordoning", () => {
    expect(Value.Default(HostCordonPost, {})).toEqual({ cordoned: true });
  });
});
