/**
 * In-process fan-out of committed cluster events to SSE clients and controllers. Events
 * are durable in the events table first; the bus only carries them to live listeners, and
 * a reconnecting client replays what it missed from the table (Last-Event-ID).
 */
import type { ClusterEvent } from "../../api/types/events.js";

type Listener = (event: ClusterEvent) => void;

/** Delivers events to subscribers, synchronously and in order. */
export class EventBus {
  private readonly listeners = new Set<Listener>();

  /** Subscribes; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Hands committed events to every subscriber; a throwing subscriber is isolated. */
  publish(events: readonly ClusterEvent[]): void {
    for (const event of events) {
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch {
          // A broken subscriber (e.g. a closed SSE socket) must not stop the others.
        }
      }
    }
  }
}
