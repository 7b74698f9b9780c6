/**
 * The one place errors become HTTP responses, for the server's API and the agent's (after
 * Incus's response/smart.go): NovaErrors keep their status and code; Fastify's validation
 * and parse errors become NOVA_BAD_REQUEST with the offending field, a body over the limit
 * NOVA_PAYLOAD_TOO_LARGE (413), a path parameter over the router's limit NOVA_URI_TOO_LONG
 * (414); anything else is NOVA_INTERNAL with the stack in the log only.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { NovaError } from "./errors.js";

/** The largest request body the APIs accept. */
export const BODY_LIMIT_BYTES = 1 << 20;
/** The longest path parameter the router matches (ids and names are at most 128 characters). */
export const MAX_PARAM_LENGTH = 128;

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
  if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new NovaError(
      "NOVA_PAYLOAD_TOO_LARGE",
      "Request body is too large; the API accepts at most 1 MiB.",
      {
        details: { limitBytes: BODY_LIMIT_BYTES },
      },
    );
  }
  if (fe.code === "FST_ERR_MAX_PARAM_LENGTH") {
    return new NovaError(
      "NOVA_URI_TOO_LONG",
      `A path parameter is too long; ids and names have at most ${MAX_PARAM_LENGTH} characters.`,
      { details: { maxLength: MAX_PARAM_LENGTH } },
    );
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

/** Sends a thrown value as the error envelope. */
function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const nova = toNovaError(err);
  if (nova.status >= 500) request.log.error({ err }, "request failed");
  else request.log.info({ code: nova.code }, nova.message);
  void reply.status(nova.status).send(nova.toJSON());
}

/**
 * Fastify's `frameworkErrors` option: errors the router raises before any route matches
 * (a bad percent-encoding, a path parameter over maxParamLength) get the same envelope.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  sendError(err, request, reply);
}

/** Finds the first string holding a NUL byte, which no id, name or stored text may contain. */
function findNul(value: unknown, path: string, depth = 0): string | undefined {
  if (typeof value === "string") return value.includes("\u0000") ? path : undefined;
  if (depth > 32 || value === null || typeof value !== "object") return undefined;
  for (const [k, v] of Object.entries(value)) {
    const found = findNul(v, path ? `${path}.${k}` : k, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * A preValidation hook: a NUL byte in a path parameter, query or body string is refused
 * with NOVA_BAD_REQUEST before it can reach the database (PostgreSQL rejects it in text).
 */
export async function rejectNulBytes(request: FastifyRequest): Promise<void> {
  for (const [where, value] of [
    ["params", request.params],
    ["querystring", request.query],
    ["body", request.body],
  ] as const) {
    const at = findNul(value, "");
    if (at !== undefined) {
      throw new NovaError(
        "NOVA_BAD_REQUEST",
        `Invalid request: ${where}${at ? `.${at}` : ""} contains a NUL byte.`,
        {
          details: { problems: [{ in: where, path: at, message: "must not contain a NUL byte" }] },
        },
      );
    }
  }
}

/** The error for a request no route serves. */
export function noRoute(method: string, url: string): NovaError {
  return new NovaError(
    "NOVA_NOT_FOUND",
    `No route ${method} ${url.split("?")[0]}. See /v1/openapi.json for the API.`,
    { details: { method, url } },
  );
}

/**
 * Answers a request no route matched, if it can (the server's web console, for GETs of
 * its own paths); returns false to leave it to the 404.
 */
export type NotFoundFallback = (request: FastifyRequest, reply: FastifyReply) => boolean;

/** Installs the error and not-found handlers; `fallback` gets a say before the 404. */
export function installErrorHandlers(app: FastifyInstance, fallback?: NotFoundFallback): void {
  app.setErrorHandler(sendError);
  app.setNotFoundHandler((request, reply) => {
    if (fallback?.(request, reply)) return;
    void reply.status(404).send(noRoute(request.method, request.url).toJSON());
  });
}
