/**
 * A span per traced HTTP request for the server's and the agents' Fastify apps, child of
 * the caller's `traceparent`, active for the request's hooks and handler — and so for
 * whatever work the handler starts, which is how a migration's agent-side spans join the
 * trace of the server's run. Which requests start a trace of their own without a
 * `traceparent` is the app's choice (`rootable`): the server's user-facing routes do; an
 * agent's routes, heartbeats, event streams and scrapes do not, or every 2-second
 * heartbeat would be a trace.
 */
import { context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { contextFromHeaders } from "./tracing.js";

declare module "fastify" {
  interface FastifyRequest {
    traceSpan?: Span;
  }
}

/**
 * Installs the request span hooks. `rootable(request)`: whether a request without a
 * `traceparent` starts a trace.
 */
export function installRequestTracing(
  app: FastifyInstance,
  rootable: (request: FastifyRequest) => boolean,
): void {
  app.addHook("onRequest", (request, _reply, done) => {
    const traced = typeof request.headers.traceparent === "string";
    if (!traced && !rootable(request)) return done();
    const route = request.routeOptions.url ?? "unknown route";
    const span = trace.getTracer("novacron").startSpan(
      `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": request.method, "http.route": route },
      },
      contextFromHeaders(request.headers),
    );
    if (!span.isRecording()) return done();
    request.traceSpan = span;
    // The rest of the hook chain and the handler run from within `done`, so the span is
    // the active one for everything the request does, including work it leaves running.
    context.with(trace.setSpan(context.active(), span), done);
  });
  app.addHook("onResponse", async (request, reply) => {
    const span = request.traceSpan;
    if (!span) return;
    span.setAttribute("http.response.status_code", reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  // A request whose client went away gets no onResponse.
  app.addHook("onRequestAbort", async (request) => {
    request.traceSpan?.setStatus({ code: SpanStatusCode.ERROR, message: "the client went away" });
    request.traceSpan?.end();
  });
}
