/** Wire types for VMs: create, list, show, actions, console. */
import { type Static, Type } from "@sinclair/typebox";
import { VM } from "../../states/vm.js";
import { ResourceName, Uuid } from "./common.js";
import { HostLabels } from "./placement.js";
import { stateUnion } from "./state-schema.js";

const VmStateSchema = stateUnion(VM);

/** Whether the server restarts the VM on another host when its host dies. */
export const VmHa = Type.Union([Type.Literal("none"), Type.Literal("restart")], {
  description:
    "restart: run it again on another host when its host dies (needs storagePool); none: stay down with the host. @defaultValue none",
});

/** A VM as the API shows it. */
export const Vm = Type.Object({
  id: Uuid,
  name: Type.String(),
  image: Type.String({ description: "Image name" }),
  imageId: Uuid,
  vcpus: Type.Integer(),
  memoryMiB: Type.Integer(),
  kernelArgs: Type.String(),
  machineType: Type.Union([Type.String(), Type.Null()], {
    description:
      "The QEMU machine type the VM runs as, fixed for its life (pinned at create, else what q35 meant on its first host); null only for VMs created before machine types were recorded, until their next start or migration",
  }),
  hostSelector: Type.Record(Type.String(), Type.String(), {
    description: "Labels every host it runs on must carry (set at create: --host-label)",
  }),
  requiredSite: Type.Union([Type.String(), Type.Null()], {
    description: "The site it must run in (set at create: --site); null: any",
  }),
  desiredState: Type.Union([Type.Literal("running"), Type.Literal("stopped"), Type.Literal("deleted")]),
  state: VmStateSchema,
  stateReason: Type.String(),
  observedState: Type.String({
    description: "What the host's agent last reported (unknown when the host is silent)",
  }),
  observedReason: Type.String(),
  host: Type.Union([Type.String(), Type.Null()], { description: "Host name" }),
  hostId: Type.Union([Uuid, Type.Null()]),
  generation: Type.Integer(),
  ha: Type.Union([Type.Literal("none"), Type.Literal("restart")], {
    description:
      "restart: when its host dies the server restarts it on another host that sees its storage pool",
  }),
  storagePool: Type.Union([Type.String(), Type.Null()], {
    description: "The shared storage pool its disk lives in; null: its host's local disk",
  }),
  createdAt: Type.String({ format: "date-time" }),
  updatedAt: Type.String({ format: "date-time" }),
  stateChangedAt: Type.String({ format: "date-time" }),
});
export type Vm = Static<typeof Vm>;

/** `GET /v1/vms`. */
export const VmList = Type.Object({ vms: Type.Array(Vm) });
export type VmList = Static<typeof VmList>;

/** `POST /v1/vms`. */
export const VmsPost = Type.Object(
  {
    name: ResourceName,
    image: Type.String({ minLength: 1, description: "Image name or id" }),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, default: 1 })),
    memoryMiB: Type.Optional(Type.Integer({ minimum: 16, maximum: 4_194_304, default: 256 })),
    kernelArgs: Type.Optional(
      Type.String({
        maxLength: 2048,
        description: "Appended to the image's kernel command line (e.g. nc.dirty_mb=64)",
      }),
    ),
    machineType: Type.Optional(
      Type.String({
        pattern: "^(q35|pc-q35-[0-9]{1,3}\\.[0-9]{1,3})$",
        description:
          "Pin the QEMU machine type, e.g. pc-q35-7.2 to keep the VM movable to QEMU 7.2 hosts. Default (or q35): the newest type of the QEMU on the host it is placed on, recorded then",
      }),
    ),
    start: Type.Optional(
      Type.Boolean({ default: true, description: "Start it once placed (else it is created stopped)" }),
    ),
    hostSelector: Type.Optional(HostLabels),
    site: Type.Optional(ResourceName),
    groups: Type.Optional(
      Type.Array(ResourceName, {
        maxItems: 16,
        uniqueItems: true,
        description: "Placement groups the VM joins (created first with novacron placement group create)",
      }),
    ),
    storagePool: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description:
          "Keep the disk in this shared storage pool (name or id) instead of the host's local disk",
      }),
    ),
    ha: Type.Optional(VmHa),
  },
  { additionalProperties: false },
);
export type VmsPost = Static<typeof VmsPost>;

/** `PATCH /v1/vms/{id}`: settings that can change while the VM exists. */
export const VmPatch = Type.Object(
  { ha: Type.Optional(VmHa) },
  { additionalProperties: false, minProperties: 1 },
);
export type VmPatch = Static<typeof VmPatch>;

/** `GET /v1/vms/{id}/console`. */
export const VmConsoleQuery = Type.Object({
  lines: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 50 })),
});
export type VmConsoleQuery = Static<typeof VmConsoleQuery>;

/** The tail of a VM's serial console. */
export const VmConsole = Type.Object({
  vm: Type.String(),
  host: Type.String(),
  lines: Type.Array(Type.String()),
});
export type VmConsole = Static<typeof VmConsole>;

/** `POST /v1/vms?dryRun=true`. */
export const VmsPostQuery = Type.Object({
  dryRun: Type.Optional(
    Type.Boolean({
      default: false,
      description: "Place the VM without creating it: the chosen host and every host's verdict",
    }),
  ),
});
export type VmsPostQuery = Static<typeof VmsPostQuery>;
