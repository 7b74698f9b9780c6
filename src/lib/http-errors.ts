/**
 * The one place errors become HTTP responses, for the server's API and the agent's (after
 * Incus's response/smart.go): NovaErrors keep their status and code; Fastify's validation,
 * parse and size errors become NOVA_BAD_REQUEST with the offending field; anything else is
 * NOVA_INTERNAL with the stack in the log only.
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { NovaError } from "./errors.js";

/** Converts any thrown value into the NovaError the client sees. */
export function toNovaError(err: unknown): NovaError {
  if (err instanceof NovaError) return err;
  const fe = err as Partial<FastifyError> & {
    validation?: { instancePath?: string; message?: string; params?: unknown }[];
  };
  if (fe.validation) {
    const where = fe.validationContext ?? "body";
    const problems = fe.validation.map(
      (v) =>
        `${where}${v.instancePath ? v.instancePath.replaceAll("/", ".") : ""} ${v.message ?? "is invalid"}`,
    );
    return new NovaError("NOVA_BAD_REQUEST", `Invalid request: ${problems.join("; ")}`, {
      details: {
        problems: fe.validation.map((v) => ({
          in: where,
          path: v.instancePath ?? "",
          message: v.message,
          params: v.params,
        })),
      },
    });
  }
  if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Fastify's own client errors: malformed JSON, wrong content type, body too large.
    const hint = fe.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" ? " Send Content-Type: application/json." : "";
    return new NovaError("NOVA_BAD_REQUEST", `Malformed request: ${fe.message ?? "bad input"}.${hint}`, {
      details: { fastifyCode: fe.code ?? null },
    });
  }
  return new NovaError("NOVA_INTERNAL", "Internal error; the server log has the details.", { cause: err });
}

/** Installs the error and not-found handlers. */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const nova = toNovaError(err);
    if (nova.status >= 500) request.log.error({ err }, "request failed");
    else request.log.info({ code: nova.code }, nova.message);
    void reply.status(nova.status).send(nova.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new NovaError(
      "NOVA_NOT_FOUND",
      `No route ${request.method} ${request.url.split("?")[0]}. See /v1/openapi.json for the API.`,
      {
        details: { method: request.method, url: request.url },
      },
    );
    void reply.status(404).send(err.toJSON());
  });
}
