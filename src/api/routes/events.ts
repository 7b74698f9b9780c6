/**
 * Route: /v1/events — Server-Sent Events of every committed state change. A client that
 * reconnects with Last-Event-ID (or ?since=ID) first gets what it missed from the events
 * table, then live events; ids are the table's, so nothing is lost or repeated.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { latestEventId, listEventsAfter } from "../../cluster/store/events.js";
import type { ClusterEvent } from "../types/events.js";
import type { RouteDeps } from "./deps.js";

/** SSE event stream. */
export const eventRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, guard }) => {
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

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const send = (e: ClusterEvent) => {
        // Id 0 marks a live-only event (migration progress): sent without an id, so it
        // neither moves the client's resume point nor is replayed.
        if (e.id === 0) {
          if (!replaying) res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
          return;
        }
        if (e.id <= cursor) return;
        cursor = e.id;
        res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      };
      // Buffer live events while replaying, so none falls between replay and subscribe.
      const pending: ClusterEvent[] = [];
      let replaying = true;
      const unsubscribe = store.bus.subscribe((e) => (replaying ? e.id !== 0 && pending.push(e) : send(e)));
      const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
      req.raw.on("close", () => {
        unsubscribe();
        clearInterval(keepAlive);
      });
      res.write(": connected\n\n");
      for (;;) {
        const batch = await listEventsAfter(store.read, cursor, 500);
        for (const e of batch) send(e);
        if (batch.length < 500) break;
      }
      replaying = false;
      for (const e of pending) send(e);
    },
  );
};
