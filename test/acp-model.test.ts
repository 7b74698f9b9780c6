/**
 * The ACP model (spec/acp.pml) checked by spin, exhaustively: its three properties hold,
 * every step of it is taken in some run (a step no run reaches would make a property
 * hold vacuously), each deliberately broken variant is caught, and its names are the
 * ones src/states/handoff.ts and docs/federation.md §10 use.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HANDOFF_SOURCE, HANDOFF_TARGET } from "../src/states/handoff.js";

const root = path.resolve(import.meta.dirname, "..");
const MODEL = path.join(root, "spec", "acp.pml");
const PROPERTIES = ["safety", "not_lost", "agreement"] as const;
type Property = (typeof PROPERTIES)[number];
/** Far above the model's depth (about 35), so a completed search is a complete one. */
const MAX_DEPTH = 100_000;

let work: string;
/** The verifier per variant (its -D flags), built once. */
const verifiers = new Map<string, string>();

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd} failed to start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** spin's C verifier for the model compiled with `defines`. */
function verifier(defines: string[]): string {
  const key = defines.join(" ") || "model";
  const built = verifiers.get(key);
  if (built) return built;
  const dir = path.join(work, key.replace(/[^A-Za-z0-9_]+/g, "_"));
  mkdirSync(dir);
  copyFileSync(MODEL, path.join(dir, "acp.pml"));
  // -o3: no statement merging, so pan lists a step no run takes by its own line.
  run("spin", ["-o3", ...defines.map((d) => `-D${d}`), "-a", "acp.pml"], dir);
  run("gcc", ["-O2", "-o", "pan", "pan.c"], dir);
  verifiers.set(key, dir);
  return dir;
}

interface Verdict {
  errors: number;
  states: number;
  transitions: number;
  depth: number;
  ms: number;
  output: string;
}

/** Checks one property (-a: also acceptance cycles, which `<>[]` needs) and parses pan's report. */
function check(property: Property, defines: string[] = []): Verdict {
  const dir = verifier(defines);
  const started = performance.now();
  // pan exits 0 whether or not it found a violation; its report says which.
  const output = run("./pan", ["-a", `-m${MAX_DEPTH}`, "-N", property], dir);
  const ms = performance.now() - started;
  const num = (re: RegExp) => {
    const m = re.exec(output);
    if (!m) throw new Error(`pan's report lacks ${re}:\n${output}`);
    return Number(m[1]);
  };
  return {
    errors: num(/errors: (\d+)/),
    states: num(/(\d+) states, stored/),
    transitions: num(/(\d+) transitions/),
    depth: num(/depth reached (\d+)/),
    ms,
    output,
  };
}

/** The names a `#define NAME(x) (x == a || x == b …)` line of the model lists. */
function modelSet(source: string, name: string): string[] {
  const line = new RegExp(`^#define ${name}\\(x\\) (.*)$`, "m").exec(source);
  if (!line) throw new Error(`spec/acp.pml has no #define ${name}(x)`);
  return [...(line[1] as string).matchAll(/x == (\w+)/g)].map((m) => m[1] as string);
}

/** The statement kinds of docs/federation.md §10's table. */
function statementKinds(): string[] {
  const doc = readFileSync(path.join(root, "docs", "federation.md"), "utf8");
  const start = doc.indexOf("### Statements");
  const table = doc.slice(start, doc.indexOf("### Messages", start));
  return [...table.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1] as string);
}

beforeAll(() => {
  for (const [tool, flag] of [
    ["spin", "-V"],
    ["gcc", "--version"],
  ] as const) {
    if (spawnSync(tool, [flag], { stdio: "ignore" }).error) {
      throw new Error(`${tool} is missing: run \`node scripts/ensure.mjs\` (as root it installs it)`);
    }
  }
  work = mkdtempSync(path.join(os.tmpdir(), "nc-acp-model-"));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the ACP model", () => {
  it.each(PROPERTIES)("satisfies %s in an exhaustive search", (property) => {
    const v = check(property);
    expect(v.output, v.output).toContain("Full statespace search for:");
    expect(v.output).toMatch(new RegExp(`never claim\\s+\\+ \\(${property}\\)`));
    expect(v.output).toMatch(/acceptance {3}cycles \t\+/);
    expect(v.output).not.toMatch(/search not completed|max search depth too small/i);
    expect(v.errors, v.output).toBe(0);
    expect(v.depth).toBeLessThan(MAX_DEPTH);
    console.log(
      `spin: ACP model, ${property}: ${v.states} states, ${v.transitions} transitions, ` +
        `depth ${v.depth}, ${v.ms.toFixed(0)} ms`,
    );
  });

  it("takes every step it has in some run", () => {
    const { output } = check("safety");
    const unreached = [...output.matchAll(/^unreached in proctype (\w+)\n((?:\t.*\n)*)/gm)];
    expect(unreached.map((m) => m[1])).toEqual(["Source", "Destination", "Environment", "Invariants"]);
    for (const [, proc, lines] of unreached) {
      // A do-loop's end is never reached; the Invariants process blocks unless something breaks.
      if (proc === "Invariants") continue;
      const steps = (lines as string).split("\n").filter((l) => l.includes('"') && !l.includes('"-end-"'));
      expect(steps, `${proc} has steps no run takes`).toEqual([]);
    }
  });

  it("names the states of src/states/handoff.ts and the statements of docs/federation.md §10", () => {
    const source = readFileSync(MODEL, "utf8");
    expect(modelSet(source, "SOURCE_STATE")).toEqual([...HANDOFF_SOURCE.list]);
    expect(modelSet(source, "SOURCE_FINAL")).toEqual([...HANDOFF_SOURCE.final]);
    expect(modelSet(source, "TARGET_STATE")).toEqual([...HANDOFF_TARGET.list]);
    expect(modelSet(source, "TARGET_FINAL")).toEqual([...HANDOFF_TARGET.final]);
    const kinds = statementKinds();
    expect(kinds).toEqual(["prepare", "prepared", "release", "owned", "returned", "abort", "aborted"]);
    expect(modelSet(source, "STATEMENT")).toEqual(kinds);
  });
});

describe("a broken variant of the model", () => {
  const mutants: Array<{ define: string; breaks: Property; what: string }> = [
    { define: "BUG_ABORT_AFTER_RELEASE", breaks: "agreement", what: "S aborts after releasing" },
    { define: "BUG_RECLAIM_ON_TIMEOUT", breaks: "safety", what: "S takes the VM back while D is silent" },
    { define: "BUG_OWN_EMPTY_COPY", breaks: "agreement", what: "D owns on release with an empty copy" },
    { define: "BUG_REMOVE_ON_RELEASE", breaks: "not_lost", what: "S removes its copy on release" },
    { define: "BUG_RELEASE_RUNNING", breaks: "safety", what: "S releases before its copy paused" },
    {
      define: "BUG_OWNED_BEFORE_RESUME",
      breaks: "not_lost",
      what: "D answers owned before its copy runs (and the copy then dies)",
    },
  ];

  it.each(mutants.map((m) => [m.what, m.define, m.breaks] as const))(
    "is caught: %s (-D%s breaks %s)",
    (_what, define, breaks) => {
      const v = check(breaks, [define]);
      expect(v.errors, v.output).toBeGreaterThan(0);
      expect(v.output).toMatch(breaks === "agreement" ? /acceptance cycle/ : /assertion violated/);
    },
  );
});
