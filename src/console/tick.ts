/**
 * Re-renders a component on every migration progress event while `active`: progress is
 * kept in api/events.ts, outside React's state, so the components that show it ask for
 * a render when it moves.
 */
import { useEffect, useReducer } from "react";
import { subscribe } from "./api/events.js";

/** Re-render on each progress event while `active`. */
export function useTick(active: boolean): void {
  const [, bump] = useReducer((n: number) => n + 1, 0);
  useEffect(() => {
    if (!active) return;
    return subscribe((e) => {
      if (e.type === "migration.progress") bump();
    });
  }, [active]);
}
