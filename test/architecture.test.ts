// The layering of src/, as docs/architecture.md states it: the table between the
// "layering" markers there is the rule, and this test walks every import (static, dynamic,
// re-export, type-only) of every non-test module and fails on an edge the table does not
// allow, on a module the table does not name, and on a table row for a module that is gone.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "..");
const SRC = path.join(ROOT, "src");

/** Directories that are modules of their own although they sit inside another module. */
const NESTED_MODULES = ["api/types", "migration/dwcp"];

/** The module a file under src/ belongs to: its first directory, or a nested module. */
function moduleOf(file: string): string {
  const rel = path
    .relative(SRC, file)
    .split(path.sep)
    .join("/")
    .replace(/\.jsx?$/, ".ts")
    .replace(/\.tsx$/, ".ts");
  for (const nested of NESTED_MODULES) if (rel.startsWith(`${nested}/`)) return nested;
  const first = rel.split("/")[0] as string;
  return rel.includes("/") ? first : first.replace(/\.ts$/, "");
}

/** Every relative import specifier in a TypeScript source. */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+["']([^"']+)["']/g,
    /(?:^|\n)\s*import\s+["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.push(m[1] as string);
  return specs.filter((s) => s.startsWith("."));
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (/\.tsx?$/.test(entry.name) && !/\.test(-util)?\.ts$/.test(entry.name)) out.push(p);
  }
  return out;
}

/** The allowed-imports table from docs/architecture.md: module → modules it may import. */
async function layeringRule(): Promise<Map<string, Set<string>>> {
  const doc = await readFile(path.join(ROOT, "docs", "architecture.md"), "utf8");
  const start = doc.indexOf("<!-- layering:start -->");
  const end = doc.indexOf("<!-- layering:end -->");
  if (start < 0 || end < start) throw new Error("docs/architecture.md lacks the layering table markers");
  const rule = new Map<string, Set<string>>();
  for (const line of doc.slice(start, end).split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 4 || !cells[1]?.startsWith("`")) continue;
    const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
    const [mod] = names(cells[1]);
    if (mod) rule.set(mod, new Set(names(cells[2] ?? "")));
  }
  return rule;
}

describe("architecture", () => {
  it("finds imports of every form and names modules by directory", () => {
    const src = [
      'import { a } from "../lib/errors.js";',
      'import type { B } from "../api/types/vms.js";',
      'export { c } from "./c.js";',
      'import "./side-effect.js";',
      'const d = await import("../daemons/launch.js");',
      'import fs from "node:fs";',
    ].join("\n");
    expect(importsOf(src).sort()).toEqual(
      [
        "../api/types/vms.js",
        "../daemons/launch.js",
        "../lib/errors.js",
        "./c.js",
        "./side-effect.js",
      ].sort(),
    );
    expect(moduleOf(path.join(SRC, "api/types/vms.ts"))).toBe("api/types");
    expect(moduleOf(path.join(SRC, "api/routes/vms.ts"))).toBe("api");
    expect(moduleOf(path.join(SRC, "migration/dwcp/relay-source.ts"))).toBe("migration/dwcp");
    expect(moduleOf(path.join(SRC, "version.ts"))).toBe("version");
    expect(moduleOf(path.join(SRC, "version.js"))).toBe("version");
    expect(moduleOf(path.join(SRC, "console/pages/vms.tsx"))).toBe("console");
  });

  it("reads a rule from the doc that keeps the protocol library and the CLI apart from the cluster", async () => {
    const rule = await layeringRule();
    expect([...(rule.get("dwcp") ?? [])]).toEqual(["lib"]);
    expect(rule.get("cli")?.has("server")).toBe(false);
    expect(rule.get("agent")?.has("cluster")).toBe(false);
    expect(rule.get("lib")?.size).toBe(0);
  });

  it("has no import edge that docs/architecture.md does not allow", async () => {
    const rule = await layeringRule();
    const violations: string[] = [];
    const seen = new Set<string>();
    for (const file of await sourceFiles(SRC)) {
      const from = moduleOf(file);
      seen.add(from);
      if (!rule.has(from)) {
        violations.push(`${path.relative(SRC, file)}: module ${from} is not in the layering table`);
        continue;
      }
      for (const spec of importsOf(await readFile(file, "utf8"))) {
        const to = moduleOf(path.resolve(path.dirname(file), spec));
        if (to === from || rule.get(from)?.has(to)) continue;
        violations.push(`${path.relative(SRC, file)} imports ${spec}: ${from} may not import ${to}`);
      }
    }
    for (const mod of rule.keys())
      if (!seen.has(mod)) violations.push(`table names ${mod}, which has no source`);
    expect(violations).toEqual([]);
  });

  it("lets the web console take only types from the rest of src/, so no server code reaches the page", async () => {
    const valueImports: string[] = [];
    for (const file of await sourceFiles(path.join(SRC, "console"))) {
      const source = await readFile(file, "utf8");
      for (const m of source.matchAll(
        /(?:^|\n)\s*(import|export)(\s+type)?\s[^;]*?\sfrom\s+["']([^"']+)["']/g,
      )) {
        const spec = m[3] as string;
        if (!spec.startsWith(".") || m[2]) continue;
        if (moduleOf(path.resolve(path.dirname(file), spec)) !== "console")
          valueImports.push(`${path.relative(SRC, file)} imports values from ${spec}`);
      }
    }
    expect(valueImports).toEqual([]);
  });
});
