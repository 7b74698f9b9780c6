/** The events table: durable record of every state change, replayed by /v1/events. */
import type { ClusterEvent } from "../../api/types/events.js";
import type { Queryable, ReadQueryable } from "./db.js";

interface EventRow {
  id: number;
  at: Date;
  type: string;
  resource_type: string;
  resource_id: string | null;
  data: Record<string, unknown>;
}

function toEvent(row: EventRow): ClusterEvent {
  return {
    id: Number(row.id),
    at: new Date(row.at).toISOString(),
    type: row.type,
    resourceType: row.resource_type,
    resourceId: row.resource_id,
    data: row.data,
  };
}

/** What a caller records; id and time are assigned by the database. */
export interface NewEvent {
  type: string;
  resourceType: string;
  resourceId: string | null;
  data: Record<string, unknown>;
}

/** Appends an event inside the caller's transaction. */
export async function appendEvent(q: Queryable, event: NewEvent): Promise<ClusterEvent> {
  const { rows } = await q.query<EventRow>(
    `INSERT INTO events (type, resource_type, resource_id, data) VALUES ($1, $2, $3, $4::jsonb)
     RETURNING id, at, type, resource_type, resource_id, data`,
    [event.type, event.resourceType, event.resourceId, JSON.stringify(event.data)],
  );
  return toEvent(rows[0]!);
}

/** Events after `afterId`, oldest first, at most `limit`. */
export async function listEventsAfter(
  q: ReadQueryable,
  afterId: number,
  limit = 1000,
): Promise<ClusterEvent[]> {
  const { rows } = await q.query<EventRow>(
    "SELECT id, at, type, resource_type, resource_id, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    [afterId, limit],
  );
  return rows.map(toEvent);
}

/** The newest event id (0 when there is none). */
export async function latestEventId(q: ReadQueryable): Promise<number> {
  const { rows } = await q.query<{ id: number | null }>("SELECT max(id) AS id FROM events");
  return Number(rows[0]?.id ?? 0);
}
