/**
 * Wire types of API tokens: creating one for another person or tool (the secret is shown
 * once), listing them (never the secrets), revoking one.
 */
import { type Static, Type } from "@sinclair/typebox";
import { Uuid } from "./common.js";

/** `POST /v1/tokens`. */
export const TokensPost = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, description: "Who or what uses it" }),
    grants: Type.Optional(
      Type.Array(Type.Literal("executions:approve-own"), {
        uniqueItems: true,
        description: "Permissions beyond an admin token's (today: executions:approve-own)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type TokensPost = Static<typeof TokensPost>;

/** A token as listed (never its secret). */
export const Token = Type.Object({
  id: Uuid,
  name: Type.String(),
  kind: Type.String({ description: "admin or join" }),
  grants: Type.Array(Type.String()),
  createdAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});
export type Token = Static<typeof Token>;

/** The reply to `POST /v1/tokens`: the token with its secret, shown this once. */
export const TokenCreated = Type.Object({
  token: Type.String({ description: "The secret; store it now, it is not shown again" }),
  id: Uuid,
  name: Type.String(),
  kind: Type.String(),
  grants: Type.Array(Type.String()),
});
export type TokenCreated = Static<typeof TokenCreated>;

/** `GET /v1/tokens`. */
export const TokenList = Type.Object({ tokens: Type.Array(Token) });
export type TokenList = Static<typeof TokenList>;
