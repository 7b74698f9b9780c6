/**
 * The PromQL in deploy/ (every Grafana dashboard's panel queries and every alert rule's
 * expression) and the metric names it uses, by a small tokenizer: string literals, label
 * matchers `{…}`, range and subquery brackets `[…]`, grouping clauses `by (…)` etc. and
 * Grafana variables go; what is left that is an identifier, not called as a function and
 * not a keyword, is a metric name. Also reads a Prometheus text exposition into the
 * names it offers.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";

/** Where deploy/ is. */
export const DEPLOY = path.join(import.meta.dirname, "..", "..", "deploy");

/** One PromQL expression and where it is. */
export interface DeployQuery {
  where: string;
  expr: string;
}

const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "inf",
  "nan",
  "atan2",
]);
const GROUPING = /\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g;

/** The metric names a PromQL expression reads. */
export function metricNamesInPromql(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(GROUPING, " ")
    .replace(/\$\{?\w+\}?/g, " ");
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const after = stripped.slice(m.index + word.length).trimStart();
    if (after.startsWith("(")) continue; // a function call
    if (KEYWORDS.has(word.toLowerCase())) continue;
    // A number's exponent (1e9) or a duration's unit (5m) is no name.
    const before = stripped[m.index - 1];
    if (before !== undefined && /[0-9.]/.test(before)) continue;
    names.add(word);
  }
  return [...names];
}

/** Every alert rule's and every dashboard panel's PromQL in deploy/. */
export async function deployQueries(): Promise<DeployQuery[]> {
  const out: DeployQuery[] = [];
  const rules = parse(await readFile(path.join(DEPLOY, "prometheus", "alerts.yml"), "utf8")) as {
    groups: { rules: { alert?: string; record?: string; expr: string }[] }[];
  };
  for (const g of rules.groups)
    for (const r of g.rules) out.push({ where: `alerts.yml ${r.alert ?? r.record}`, expr: r.expr });
  const dir = path.join(DEPLOY, "grafana");
  for (const file of (await readdir(dir)).filter((f) => f.endsWith(".json")).sort()) {
    const d = JSON.parse(await readFile(path.join(dir, file), "utf8")) as {
      panels: { title: string; targets?: { expr?: string }[] }[];
    };
    for (const p of d.panels)
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `${file} "${p.title}"`, expr: t.expr });
  }
  return out;
}

/**
 * The names a Prometheus text exposition offers: every family declared by `# TYPE` (with
 * `_bucket`, `_sum` and `_count` for histograms and summaries) and every sample's name.
 */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line);
    if (type) {
      const [, name, kind] = type as unknown as [string, string, string];
      names.add(name);
      if (kind === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
      if (kind === "summary") for (const s of ["_sum", "_count"]) names.add(name + s);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}
