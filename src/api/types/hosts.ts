/** Wire types for hosts: what `GET /v1/hosts` returns and `host cordon` sends. */
import { type Static, Type } from "@sinclair/typebox";
import { QemuInfo } from "./agent.js";
import { Uuid } from "./common.js";

/** A hypervisor host as the API shows it. */
export const Host = Type.Object({
  id: Uuid,
  name: Type.String(),
  agentUrl: Type.String(),
  liveness: Type.Union([Type.Literal("alive"), Type.Literal("dead")]),
  cordoned: Type.Boolean(),
  accel: Type.Union([Type.Literal("kvm"), Type.Literal("tcg")]),
  accelReason: Type.String(),
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  allocatedMemoryMiB: Type.Integer({ description: "Memory held by VMs placed here that are not stopped" }),
  freeMemoryMiB: Type.Integer(),
  vmCount: Type.Integer(),
  diskTotalBytes: Type.Number(),
  diskFreeBytes: Type.Number(),
  agentVersion: Type.String(),
  qemu: Type.Union([QemuInfo, Type.Null()], {
    description: "The host's QEMU as its agent last reported it (null: the agent predates QEMU reporting)",
  }),
  registeredAt: Type.String({ format: "date-time" }),
  lastHeartbeatAt: Type.String({ format: "date-time" }),
});
export type Host = Static<typeof Host>;

/** `GET /v1/hosts`. */
export const HostList = Type.Object({ hosts: Type.Array(Host) });
export type HostList = Static<typeof HostList>;

/** `POST /v1/hosts/{id}/cordon` body. */
export const HostCordonPost = Type.Object(
  { cordoned: Type.Boolean({ default: true }) },
  { additionalProperties: false },
);
export type HostCordonPost = Static<typeof HostCordonPost>;
