/** Wire types for storage pools: directories every host mounts, where HA VMs keep their disks. */
import { type Static, Type } from "@sinclair/typebox";
import { ResourceName, Uuid } from "./common.js";

/** A storage pool as the API shows it. */
export const StoragePool = Type.Object({
  id: Uuid,
  name: Type.String(),
  path: Type.String({ description: "The directory, the same on every host (e.g. an NFS mount)" }),
  hosts: Type.Array(Type.String(), {
    description: "Hosts whose agents last reported seeing the pool (its marker file holds the pool's id)",
  }),
  vmCount: Type.Integer({ description: "VMs keeping their disks in the pool" }),
  createdAt: Type.String({ format: "date-time" }),
});
export type StoragePool = Static<typeof StoragePool>;

/** `GET /v1/storage-pools`. */
export const StoragePoolList = Type.Object({ storagePools: Type.Array(StoragePool) });
export type StoragePoolList = Static<typeof StoragePoolList>;

/** `POST /v1/storage-pools`. */
export const StoragePoolsPost = Type.Object(
  {
    name: ResourceName,
    path: Type.String({
      pattern: "^/",
      minLength: 2,
      maxLength: 200,
      description: "Absolute path of the directory, mounted at the same path on every host",
    }),
  },
  { additionalProperties: false },
);
export type StoragePoolsPost = Static<typeof StoragePoolsPost>;

/** `POST /v1/storage-pools` reply: the pool, and whether the server wrote its marker. */
export const StoragePoolCreated = Type.Object({
  storagePool: StoragePool,
  marker: Type.Object({
    path: Type.String({ description: "<path>/.novacron-pool" }),
    content: Type.String({ description: "What the file must hold: the pool's id" }),
    written: Type.Boolean({
      description:
        "The server could write it (the directory is mounted on the server too); otherwise write it on the shared storage yourself",
    }),
  }),
});
export type StoragePoolCreated = Static<typeof StoragePoolCreated>;
