/**
 * Route: /v1/events — Server-Sent Events of every committed state change. A client that
 * reconnects with Last-Event-ID (or ?since=ID) first gets what it missed from the events
 * table, then live events; ids are the table's, so nothing is lost or repeated.
 *
 * Bounded: streams per token and in total are capped (429 beyond, EventStreams); a
 * revoked token's streams end at once, and every heartbeat re-checks the token; a client
 * that does not read is dropped once its unsent bytes pass `sseBufferBytes` (it resumes
 * with Last-Event-ID), and the replay waits for the client instead of buffering.
 */
import type { ServerResponse } from "node:http";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { latestEventId, listEventsAfter } from "../../cluster/store/events.js";
import { stillValid } from "../auth.js";
import { rateLimited } from "../limits.js";
import type { ClusterEvent } from "../types/events.js";
import type { RouteDeps } from "./deps.js";

/** Seconds a refused stream is told to wait: streams free up as clients leave. */
const STREAM_RETRY_AFTER_S = 5;
/** Live events held back while the replay runs; beyond this the client is too slow to follow. */
const MAX_PENDING_EVENTS = 10_000;

/** Resolves when `res` can take more (drained), false when it closed or stayed full for `ms`. */
function drained(res: ServerResponse, ms: number): Promise<boolean> {
  if (!res.writableNeedDrain) return Promise.resolve(!res.destroyed);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    res.on("drain", onDrain);
    res.on("close", onClose);
  });
}

/** SSE event stream. */
export const eventRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (
  app,
  { store, users, guard, streams, limits },
) => {
  app.get(
    "/v1/events",
    {
      schema: {
        tags: ["events"],
        querystring: Type.Object({
          since: Type.Optional(Type.Integer({ minimum: 0, description: "Replay events after this id" })),
        }),
      },
      onRequest: guard("events:read"),
    },
    async (req, reply) => {
      const header = req.headers["last-event-id"];
      const fromHeader = typeof header === "string" && /^\d+$/.test(header) ? Number(header) : undefined;
      let cursor = fromHeader ?? req.query.since ?? (await latestEventId(store.read));
      const credential = req.credential!;
      const res = reply.raw;

      let ended = false;
      /** Ends the stream: a last comment saying why, then the end (or a cut, for a client that does not read). */
      const end = (reason: string) => {
        if (ended) return;
        ended = true;
        cleanup();
        if (res.destroyed) return;
        if (res.headersSent) res.end(`: closed: ${reason}\n\n`);
        else res.destroy();
        setTimeout(() => res.destroy(), 1000).unref();
      };
      // A user's streams are counted and ended per login session (logging out ends them).
      const slot = streams.open(req.principal!.sessionId ?? req.principal!.id, end);
      if (typeof slot === "string") throw rateLimited(reply, slot, STREAM_RETRY_AFTER_S);
      const held = slot;

      reply.hijack();
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const write = (chunk: string) => {
        if (ended || res.destroyed) return;
        res.write(chunk);
        if (res.writableLength > limits.sseBufferBytes) {
          req.log.info({ unsentBytes: res.writableLength }, "event stream dropped: the client does not read");
          ended = true;
          cleanup();
          res.destroy();
        }
      };
      const send = (e: ClusterEvent) => {
        // Id 0 marks a live-only event (migration progress): sent without an id, so it
        // neither moves the client's resume point nor is replayed.
        if (e.id === 0) {
          if (!replaying) write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
          return;
        }
        if (e.id <= cursor) return;
        cursor = e.id;
        write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      };
      // Buffer live events while replaying, so none falls between replay and subscribe.
      const pending: ClusterEvent[] = [];
      let replaying = true;
      const unsubscribe = store.bus.subscribe((e) => {
        if (!replaying) return send(e);
        if (e.id === 0) return;
        pending.push(e);
        if (pending.length > MAX_PENDING_EVENTS)
          end("the client reads too slowly to follow; resume with Last-Event-ID");
      });
      // The heartbeat keeps idle proxies open and re-checks the credential, so a
      // revocation made by another process, or a session that ended, also ends the stream
      // within one beat.
      const heartbeat = setInterval(() => {
        write(": keep-alive\n\n");
        stillValid({ read: () => store.read, users }, credential).then(
          (valid) => {
            if (!valid) end(credential.kind === "session" ? "session ended" : "token revoked");
          },
          () => {},
        );
      }, limits.sseHeartbeatMs);
      function cleanup() {
        unsubscribe();
        clearInterval(heartbeat);
        held.release();
      }
      res.on("close", () => end("connection closed"));
      write(": connected\n\n");
      for (;;) {
        const batch = await listEventsAfter(store.read, cursor, 500);
        for (const e of batch) send(e);
        // Wait for a slow reader rather than buffering the whole backlog for it.
        if (ended || !(await drained(res, 2 * limits.sseHeartbeatMs)))
          return end("the client stopped reading");
        if (batch.length < 500) break;
      }
      replaying = false;
      for (const e of pending) send(e);
    },
  );
};
