/** Reading the server's SSE event stream in the end-to-end suites. */
import type { LocalCluster, StreamedEvent } from "../../src/demo/local-cluster.js";

/** One event as the stream carries it. */
export type EventMsg = StreamedEvent;

/** Reads the SSE stream from `since` until it has replayed the backlog. */
export function fetchEvents(c: LocalCluster, since: number): Promise<EventMsg[]> {
  return c.events(since);
}

/**
 * Opens the SSE stream live (from the newest event) and resolves with the first event
 * `match` accepts; `act` runs once the stream is open. Bounded by `timeoutMs`.
 */
export async function nextLiveEvent(
  c: LocalCluster,
  match: (e: EventMsg) => boolean,
  act: () => Promise<void>,
  timeoutMs = 20_000,
): Promise<EventMsg> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await c.fetch("/v1/events", {
      headers: { authorization: `Bearer ${c.adminToken}` },
      signal: controller.signal,
    });
    if (!(res.headers.get("content-type") ?? "").includes("text/event-stream"))
      throw new Error(`/v1/events answered ${res.status}`);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    // The stream says ": connected" once it is subscribed: act only then.
    while (!text.includes(": connected")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error("the event stream ended before it was open");
      text += decoder.decode(chunk.value);
    }
    await act();
    for (;;) {
      const blocks = text.split("\n\n");
      text = blocks.pop() ?? "";
      for (const block of blocks) {
        const data = block.split("\n").find((l) => l.startsWith("data: "));
        if (!data) continue;
        const e = JSON.parse(data.slice(6)) as EventMsg;
        if (match(e)) return e;
      }
      const chunk = await reader.read();
      if (chunk.done) throw new Error("the event stream ended before the event came");
      text += decoder.decode(chunk.value);
    }
  } catch (err) {
    if (controller.signal.aborted) throw new Error(`no matching live event within ${timeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}
