/**
 * Failpoints: named places in a long protocol where a test can make this process die
 * exactly as `kill -9` would, right after a step committed (docs/testing.md, "Faults").
 * Off unless NOVACRON_FAILPOINTS names them (`name=kill`, comma-separated), read once at
 * start; no production setting does. Timing a kill from outside cannot hit a step that
 * lasts milliseconds; a failpoint hits it every time.
 */

const ACTIONS = ["kill"] as const;
type Action = (typeof ACTIONS)[number];

/** Parses NOVACRON_FAILPOINTS; throws on a malformed entry so a typo never silently tests nothing. */
export function parseFailpoints(spec: string | undefined): Map<string, Action> {
  const out = new Map<string, Action>();
  for (const entry of (spec ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const [name, action] = entry.split("=");
    if (!name || !/^[a-z0-9.-]+$/.test(name) || !ACTIONS.includes(action as Action))
      throw new Error(`NOVACRON_FAILPOINTS: "${entry}" is not NAME=${ACTIONS.join("|")}`);
    out.set(name, action as Action);
  }
  return out;
}

const active = parseFailpoints(process.env.NOVACRON_FAILPOINTS);

/** Dies here (SIGKILL to itself: no cleanup, no flush) when the failpoint `name` is set. */
export function failpoint(name: string): void {
  if (active.get(name) === "kill") process.kill(process.pid, "SIGKILL");
}
