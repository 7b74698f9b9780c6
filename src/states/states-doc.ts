/** Renders docs/states.md from the state machine catalog (`npm run docs:states`). */
import { type StateMachine, stateTableMarkdown } from "../lib/state-machine.js";
import { STATE_MACHINES } from "./catalog.js";

function mermaid(m: StateMachine<string>): string {
  const id = (s: string) => s.replace(/[^A-Za-z0-9_]/g, "_");
  const lines = ["```mermaid", "stateDiagram-v2"];
  for (const s of m.initial) lines.push(`  [*] --> ${id(s)}`);
  for (const from of m.list) {
    for (const to of m.transitions[from] ?? []) lines.push(`  ${id(from)} --> ${id(to)}`);
  }
  for (const s of m.final) if ((m.transitions[s] ?? []).length === 0) lines.push(`  ${id(s)} --> [*]`);
  lines.push("```");
  return lines.join("\n");
}

/** The Markdown of docs/states.md. */
export function renderStatesDoc(): string {
  const out = [
    "# State machines",
    "",
    "<!-- Generated from src/states/catalog.ts by `npm run docs:states`; a unit test keeps it in step. -->",
    "",
    "Each state machine is defined once, in the file named below (states, transitions, final states",
    "and a diagram in its header). The API's schemas and this page are derived from that definition;",
    "test/state-machines.test.ts checks each table's SQL `CHECK` against it on PostgreSQL and PGlite.",
    "Every persisted state change is one compare-and-set (`… WHERE id = $1 AND state = $from`): an",
    "illegal move fails with `NOVA_ILLEGAL_STATE`, a move another writer won first with",
    "`NOVA_STATE_CHANGED`. A final state is one nothing leaves on its own; where an operator may",
    "still move it (a retry), the table lists that edge.",
    "",
  ];
  for (const { machine, source, column } of STATE_MACHINES) {
    out.push(`## ${machine.name}`, "");
    out.push(
      `Defined in \`src/${source}\`; ${column ? `stored in \`${column}\`` : "held in memory only"}.`,
      "",
    );
    out.push(stateTableMarkdown(machine), "");
    out.push(mermaid(machine), "");
  }
  return out.join("\n");
}

// Run directly: print the document.
if (process.argv[1]?.endsWith("states-doc.js")) process.stdout.write(renderStatesDoc());
