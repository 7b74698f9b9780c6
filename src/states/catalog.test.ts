import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { defineStateMachine } from "../lib/state-machine.js";
import { STATE_MACHINES } from "./catalog.js";
import { MIGRATION } from "./migration.js";
import { renderStatesDoc } from "./states-doc.js";
import { ALLOWED_ACTIONS, VM } from "./vm.js";

describe("state machine catalog", () => {
  it("is documented in docs/states.md exactly as the definitions say (npm run docs:states)", async () => {
    const doc = await readFile(new URL("../../docs/states.md", import.meta.url), "utf8");
    expect(doc).toBe(renderStatesDoc());
  });

  it("lets every machine's initial states reach every one of its states", () => {
    for (const { machine } of STATE_MACHINES) {
      const seen = new Set<string>(machine.initial);
      const todo = [...machine.initial];
      while (todo.length > 0) {
        for (const t of machine.transitions[todo.pop() as string] ?? []) {
          if (!seen.has(t)) {
            seen.add(t);
            todo.push(t);
          }
        }
      }
      expect([...seen].sort(), machine.name).toEqual([...machine.list].sort());
    }
  });
});

describe("defineStateMachine", () => {
  const ok = {
    name: "door",
    states: { open: "open", shut: "shut", gone: "removed" },
    initial: ["shut"],
    transitions: { open: ["shut"], shut: ["open", "gone"], gone: [] },
    final: ["gone"],
  } as const;

  it("answers can / isFinal / is from the table alone", () => {
    const m = defineStateMachine(ok);
    expect(m.can("shut", "open")).toBe(true);
    expect(m.can("open", "gone")).toBe(false);
    expect(m.can("gone", "open")).toBe(false);
    expect(m.isFinal("gone")).toBe(true);
    expect(m.isFinal("open")).toBe(false);
    expect(m.is("open")).toBe(true);
    expect(m.is("ajar")).toBe(false);
    expect(m.active).toEqual(["open", "shut"]);
  });

  it("refuses an illegal move with NOVA_ILLEGAL_STATE naming what the state allows", () => {
    const m = defineStateMachine(ok);
    try {
      m.assertTransition("door 1", "open", "gone");
      expect.unreachable();
    } catch (err) {
      expect(isNovaError(err, "NOVA_ILLEGAL_STATE")).toBe(true);
      if (!isNovaError(err)) throw err;
      expect(err.message).toContain("allows shut");
      expect(err.details).toMatchObject({ machine: "door", from: "open", to: "gone", allowedNext: ["shut"] });
    }
  });

  it("rejects a definition with an unknown target or a state that cannot finish", () => {
    expect(() =>
      defineStateMachine({ ...ok, transitions: { open: ["ajar" as "open"], shut: ["gone"], gone: [] } }),
    ).toThrow(/open → ajar: unknown target/);
    expect(() =>
      defineStateMachine({ ...ok, transitions: { open: ["shut"], shut: ["open"], gone: [] } }),
    ).toThrow(/open cannot reach a final state/);
  });
});

/** The first column (states) and the rows of the first table in `doc` whose header starts with `header`. */
async function docTable(doc: string, header: string): Promise<Map<string, string[]>> {
  const text = await readFile(new URL(`../../docs/${doc}`, import.meta.url), "utf8");
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`| ${header} |`));
  expect(start, `${doc} has a table headed "${header}"`).toBeGreaterThanOrEqual(0);
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const cells = line
      .split("|")
      .slice(1, -1)
      .map((c) => c.trim());
    for (const state of (cells[0] ?? "").split("/")) rows.set(state.trim().replace(/`/g, ""), cells);
  }
  return rows;
}

describe("hand-written state tables in the docs", () => {
  it("docs/vm-lifecycle.md lists every VM state with the actions it allows", async () => {
    const rows = await docTable("vm-lifecycle.md", "state");
    expect([...rows.keys()].sort()).toEqual([...VM.list].sort());
    for (const s of VM.list) {
      const allowed = (rows.get(s)?.[2] ?? "").replace(/\(.*\)/, "").trim();
      expect(allowed === "—" ? [] : allowed.split(/,\s*/), s).toEqual([...ALLOWED_ACTIONS[s]]);
    }
  });

  it("docs/migration.md describes every migration state", async () => {
    const rows = await docTable("migration.md", "migration state");
    expect([...rows.keys()].sort()).toEqual([...MIGRATION.list].sort());
  });
});
