/**
 * Routes: /v1/users — managing users (users:read, users:write; an admin's): create (with a
 * generated one-time password unless one is given), list, show, delete, change a role,
 * reset a password, lift a lock-out, turn a second factor off. Deleting a user or
 * resetting their password ends their sessions and their open event streams at once.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import {
  User,
  UserList,
  UserPasswordPost,
  UserRolePut,
  UsersPost,
  UserWithPassword,
} from "../types/users.js";
import type { RouteDeps } from "./deps.js";

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });

/** User routes. */
export const userRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { users, guard, streams }) => {
  app.post(
    "/v1/users",
    {
      schema: { tags: ["users"], body: UsersPost, response: { 201: UserWithPassword } },
      onRequest: guard("users:write"),
    },
    async (req, reply) => reply.status(201).send(await users.create(req.body)),
  );

  app.get(
    "/v1/users",
    { schema: { tags: ["users"], response: { 200: UserList } }, onRequest: guard("users:read") },
    async () => ({ users: await users.list() }),
  );

  app.get(
    "/v1/users/:name",
    {
      schema: { tags: ["users"], params: NameParams, response: { 200: User } },
      onRequest: guard("users:read"),
    },
    async (req) => users.get(req.params.name),
  );

  app.delete(
    "/v1/users/:name",
    { schema: { tags: ["users"], params: NameParams }, onRequest: guard("users:write") },
    async (req, reply) => {
      for (const id of await users.delete(req.params.name)) streams.revoke(id, "user deleted");
      return reply.status(204).send();
    },
  );

  app.post(
    "/v1/users/:name/role",
    {
      schema: { tags: ["users"], params: NameParams, body: UserRolePut, response: { 200: User } },
      onRequest: guard("users:write"),
    },
    async (req) => users.setRole(req.params.name, req.body.role),
  );

  app.post(
    "/v1/users/:name/password",
    {
      schema: {
        tags: ["users"],
        params: NameParams,
        body: Type.Optional(UserPasswordPost),
        response: { 200: UserWithPassword },
      },
      // The body is optional: without one the server generates the new password.
      preValidation: async (req: { body: unknown }) => {
        req.body ??= {};
      },
      onRequest: guard("users:write"),
    },
    async (req) => {
      const { user, password, endedSessions } = await users.resetPassword(
        req.params.name,
        req.body?.password,
      );
      for (const id of endedSessions) streams.revoke(id, "password reset");
      return { user, ...(password ? { password } : {}) };
    },
  );

  app.post(
    "/v1/users/:name/unlock",
    {
      schema: { tags: ["users"], params: NameParams, response: { 200: User } },
      onRequest: guard("users:write"),
    },
    async (req) => users.unlock(req.params.name),
  );

  app.delete(
    "/v1/users/:name/mfa",
    {
      schema: { tags: ["users"], params: NameParams, response: { 200: User } },
      onRequest: guard("users:write"),
    },
    async (req) => users.adminDisableMfa(req.params.name),
  );
};
