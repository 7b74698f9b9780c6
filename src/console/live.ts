/**
 * useLive: data from the API that reloads when the events say it changed (debounced,
 * so a burst of events costs one reload) and after the stream resumed from a gap.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import type { ClusterEvent } from "../api/types/events.js";
import { ApiError } from "./api/client.js";
import { subscribe } from "./api/events.js";

/** What a page shows while loading, after an error, or with data. */
export interface Live<T> {
  data: T | undefined;
  error: string | null;
  reload: () => void;
}

const DEBOUNCE_MS = 250;

/** Loads with `load`, again when an event's type starts with one of `prefixes`. */
export function useLive<T>(load: () => Promise<T>, prefixes: readonly string[], key = ""): Live<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const seq = useRef(0);

  const reload = useCallback(() => {
    const mine = ++seq.current;
    loadRef.current().then(
      (d) => {
        if (mine !== seq.current) return;
        setData(d);
        setError(null);
      },
      (err: unknown) => {
        if (mine !== seq.current) return;
        setError(err instanceof ApiError ? err.message : String(err));
      },
    );
  }, []);

  const prefixKey = prefixes.join(",");
  // biome-ignore lint/correctness/useExhaustiveDependencies: key and prefixKey say when to resubscribe.
  useEffect(() => {
    reload();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const wanted = prefixKey.split(",");
    const unsubscribe = subscribe((e) => {
      const relevant =
        e.type === "resync" || ((e as ClusterEvent).id !== 0 && wanted.some((p) => e.type.startsWith(p)));
      if (!relevant || timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        reload();
      }, DEBOUNCE_MS);
    });
    return () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
    };
  }, [reload, prefixKey, key]);

  return { data, error, reload };
}
