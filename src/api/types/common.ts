/** Schemas shared by every resource: ids, names, the error envelope. */
import { type Static, Type } from "@sinclair/typebox";

/** A resource id (UUID). */
export const Uuid = Type.String({ format: "uuid", description: "Resource id (UUID)" });

/** A resource name: what users type. */
export const ResourceName = Type.String({
  pattern: "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
  description: "1-63 lowercase letters, digits and dashes; starts and ends with a letter or digit",
});

/** Path parameter: a resource by id or by name. */
export const IdOrNameParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
export type IdOrNameParams = Static<typeof IdOrNameParams>;

/** The body of every error response. */
export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: "Stable NOVA_… code, see docs/errors.md" }),
      message: Type.String(),
      details: Type.Record(Type.String(), Type.Unknown()),
    }),
  },
  { $id: "ErrorResponse" },
);
export type ErrorResponse = Static<typeof ErrorResponse>;
