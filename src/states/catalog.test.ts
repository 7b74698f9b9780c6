import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { defineStateMachine } from "../lib/state-machine.js";
import { STATE_MACHINES } from "./catalog.js";
import { renderStatesDoc } from "./states-doc.js";

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
