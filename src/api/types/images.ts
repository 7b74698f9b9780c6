/** Wire types for images: list and import. */
import { type Static, Type } from "@sinclair/typebox";
import { ResourceName, Uuid } from "./common.js";

const AbsolutePath = Type.String({
  pattern: "^/",
  minLength: 2,
  maxLength: 4096,
  description: "Absolute path on the host",
});

/** An image: a base disk plus, for direct kernel boot, a kernel and initrd. */
export const Image = Type.Object({
  id: Uuid,
  name: Type.String(),
  diskDigest: Type.String(),
  diskFormat: Type.Union([Type.Literal("qcow2"), Type.Literal("raw")]),
  diskVirtualBytes: Type.Number(),
  kernelDigest: Type.Union([Type.String(), Type.Null()]),
  initrdDigest: Type.Union([Type.String(), Type.Null()]),
  cmdline: Type.String(),
  minMemoryMiB: Type.Integer(),
  hosts: Type.Array(Type.String(), { description: "Names of the hosts whose image store holds it" }),
  createdAt: Type.String({ format: "date-time" }),
});
export type Image = Static<typeof Image>;

/** `GET /v1/images`. */
export const ImageList = Type.Object({ images: Type.Array(Image) });
export type ImageList = Static<typeof ImageList>;

/** `POST /v1/images`: import files that exist on the hosts into their image stores. */
export const ImagesPost = Type.Object(
  {
    name: ResourceName,
    disk: AbsolutePath,
    kernel: Type.Optional(AbsolutePath),
    initrd: Type.Optional(AbsolutePath),
    cmdline: Type.Optional(Type.String({ maxLength: 4096 })),
    minMemoryMiB: Type.Optional(Type.Integer({ minimum: 16, maximum: 1_048_576 })),
    hosts: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: "Host names or ids to import on; default: every live host",
      }),
    ),
  },
  { additionalProperties: false },
);
export type ImagesPost = Static<typeof ImagesPost>;
