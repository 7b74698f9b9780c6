/**
 * Failpoints: named places in a long protocol where a test can make this process die
 * exactly as `kill -9` would, or freeze, right after a step committed (docs/testing.md,
 * "Faults"). Off unless NOVACRON_FAILPOINTS names them (`name=kill` or `name=stop`,
 * comma-separated), read once at start; no production setting does. Timing a fault from
 * outside cannot hit a step that lasts milliseconds; a failpoint hits it every time.
 *
 * `stop` sends this process SIGSTOP: it stands still, sockets open, until the test sends
 * SIGCONT, having done whatever it wanted meanwhile (cut a link, stop a database).
 */

const ACTIONS = ["kill", "stop"] as const;
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

/**
 * Dies here (SIGKILL to itself: no cleanup, no flush) or freezes until SIGCONT (SIGSTOP),
 * when the failpoint `name` is set.
 */
export function failpoint(name: string): void {
  const action = active.get(name);
  if (action === "kill") process.kill(process.pid, "SIGKILL");
  else if (action === "stop") process.kill(process.pid, "SIGSTOP");
}
