/**
 * The console's one live connection: the cluster's SSE stream (/v1/events), authenticated
 * by the session cookie, read with fetch and a streaming reader rather than EventSource
 * so that a refusal's status and message reach client.ts (an ended session returns to
 * the login page with the reason), resumed with Last-Event-ID after a drop. Pages subscribe
 * here instead of opening streams of their own (the server caps streams per session). The
 * progress of running migrations (live-only events) is kept here, bounded, so a chart
 * has the readings newer than the server's stored history (at most one a second).
 */
import type { ClusterEvent } from "../../api/types/events.js";
import type { MigrationProgress } from "../../api/types/migrations.js";
import { apiFetch } from "./client.js";
import { SseParser } from "./sse.js";

/** Connection state shown in the header. */
export type StreamStatus = "connecting" | "live" | "reconnecting";

/** A sample of a migration's progress, as received. */
export interface ProgressSample {
  /** When the server read it (the event's time), ms since the epoch. */
  at: number;
  progress: MigrationProgress;
}

/** Events the hub dispatches; `resync` means "you may have missed some: reload". */
export type HubEvent = ClusterEvent | { type: "resync" };

const MAX_SAMPLES = 1200;
const MAX_TRACKED_MIGRATIONS = 50;

type Listener = (e: HubEvent) => void;
const listeners = new Set<Listener>();
const statusListeners = new Set<(s: StreamStatus) => void>();
const progress = new Map<string, ProgressSample[]>();
let status: StreamStatus = "connecting";
let controller: AbortController | null = null;

/** Subscribes to every event; returns the unsubscribe. */
export function subscribe(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Subscribes to the connection state. */
export function onStatus(fn: (s: StreamStatus) => void): () => void {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

/** The progress samples received for a migration, oldest first. */
export function progressOf(migrationId: string): readonly ProgressSample[] {
  return progress.get(migrationId) ?? [];
}

function setStatus(s: StreamStatus): void {
  status = s;
  for (const l of statusListeners) l(s);
}

function dispatch(e: HubEvent): void {
  if (e.type === "migration.progress" && "resourceId" in e && e.resourceId) {
    const p = (e.data as { progress?: MigrationProgress }).progress;
    if (p) record(e.resourceId, p, Date.parse(e.at) || Date.now());
  }
  for (const l of listeners) l(e);
}

function record(id: string, p: MigrationProgress, at: number): void {
  let samples = progress.get(id);
  if (!samples) {
    if (progress.size >= MAX_TRACKED_MIGRATIONS) progress.delete(progress.keys().next().value as string);
    samples = [];
    progress.set(id, samples);
  }
  samples.push({ at, progress: p });
  if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
}

/** Starts the stream (idempotent); it runs until `stopEvents`. */
export function startEvents(): void {
  if (controller) return;
  controller = new AbortController();
  void run(controller.signal);
}

/** Ends the stream (logout). */
export function stopEvents(): void {
  controller?.abort();
  controller = null;
  progress.clear();
}

async function run(signal: AbortSignal): Promise<void> {
  let lastId: string | null = null;
  let backoffMs = 500;
  let first = true;
  while (!signal.aborted) {
    setStatus(first ? "connecting" : "reconnecting");
    try {
      const res = await apiFetch("/v1/events", {
        signal,
        headers: lastId
          ? { "last-event-id": lastId, accept: "text/event-stream" }
          : { accept: "text/event-stream" },
      });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setStatus("live");
      backoffMs = 500;
      // After a gap the replay fills what the events table holds; live-only events (and
      // anything before the first connection) are not replayed, so pages reload.
      if (!first) dispatch({ type: "resync" });
      first = false;
      const parser = new SseParser();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const msg of parser.push(value)) {
          if (msg.id) lastId = msg.id;
          try {
            dispatch(JSON.parse(msg.data) as ClusterEvent);
          } catch {
            // A message that is not an event is not ours to act on.
          }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    setStatus("reconnecting");
    await new Promise((r) => setTimeout(r, backoffMs));
    backoffMs = Math.min(backoffMs * 2, 10_000);
  }
}
