// deploy/: the alert rules pass `promtool check rules` and their unit tests (`promtool test
// rules`), the example Prometheus configuration passes `promtool check config`, every alert
// has a severity and a runbook that exists, and every metric a dashboard or a rule names
// is documented in docs/metrics.md. (test/metrics-scrape.slow.test.ts checks them against
// a live server and agent.)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DEPLOY, deployQueries, exposedNames, metricNamesInPromql } from "./helpers/deploy-queries.js";

const ROOT = path.join(DEPLOY, "..");

function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync("promtool", args, { cwd: path.join(DEPLOY, "prometheus"), encoding: "utf8" });
  if (r.error)
    throw new Error(
      `promtool is missing (Debian's prometheus package; npm test installs it): ${r.error.message}`,
    );
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe("deploy/", () => {
  it("has alert rules promtool accepts, and their unit tests pass", () => {
    const check = promtool(["check", "rules", "alerts.yml"]);
    expect(check.output).toContain("SUCCESS");
    expect(check.status).toBe(0);
    const test = promtool(["test", "rules", "alerts.test.yml"]);
    expect(test.output).toContain("SUCCESS");
    expect(test.status).toBe(0);
  });

  it("has unit tests that fail when an alert's outcome is not the one expected", async () => {
    // The same tests against rules whose thresholds never fire: promtool must say FAILED.
    const dir = await mkdtemp("/tmp/wt-metrics-rules-");
    try {
      const rules = (await readFile(path.join(DEPLOY, "prometheus", "alerts.yml"), "utf8")).replace(
        /^(\s+expr: )(.*)$/gm,
        "$1($2) and on() vector(0) > 1",
      );
      await writeFile(path.join(dir, "alerts.yml"), rules);
      await writeFile(
        path.join(dir, "alerts.test.yml"),
        await readFile(path.join(DEPLOY, "prometheus", "alerts.test.yml"), "utf8"),
      );
      const r = spawnSync("promtool", ["test", "rules", "alerts.test.yml"], { cwd: dir, encoding: "utf8" });
      expect(r.status).not.toBe(0);
      expect(`${r.stdout}${r.stderr}`).toContain("FAILED");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("has an example Prometheus configuration promtool accepts", async () => {
    const dir = await mkdtemp("/tmp/wt-metrics-prom-");
    try {
      // promtool checks that the credential files exist: put stand-ins where the copy points.
      for (const f of ["ca.pem", "cert.pem", "key.pem"]) await writeFile(path.join(dir, f), "");
      const config = (await readFile(path.join(DEPLOY, "prometheus", "prometheus.yml"), "utf8")).replaceAll(
        "/etc/prometheus/novacron/",
        `${dir}/`,
      );
      await writeFile(path.join(dir, "prometheus.yml"), config);
      await writeFile(
        path.join(dir, "alerts.yml"),
        await readFile(path.join(DEPLOY, "prometheus", "alerts.yml"), "utf8"),
      );
      const r = spawnSync("promtool", ["check", "config", "prometheus.yml"], { cwd: dir, encoding: "utf8" });
      expect(`${r.stdout}${r.stderr}`).toContain("SUCCESS");
      expect(r.status).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gives every alert a severity and a runbook in docs/runbooks/ named after it", async () => {
    const rules = parse(await readFile(path.join(DEPLOY, "prometheus", "alerts.yml"), "utf8")) as {
      groups: {
        rules: { alert: string; labels: { severity?: string }; annotations: { runbook_url?: string } }[];
      }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    for (const a of alerts) {
      expect(["critical", "warning", "info"], a.alert).toContain(a.labels.severity);
      expect(a.annotations.runbook_url, a.alert).toBe(`docs/runbooks/${a.alert}.md`);
      expect(existsSync(path.join(ROOT, a.annotations.runbook_url!)), a.annotations.runbook_url).toBe(true);
    }
    const runbooks = (await readdir(path.join(ROOT, "docs", "runbooks"))).filter((f) => f.endsWith(".md"));
    expect(runbooks.sort()).toEqual(alerts.map((a) => `${a.alert}.md`).sort());
  });

  it("names only metrics that docs/metrics.md documents, in four dashboards", async () => {
    const documented = await readFile(path.join(ROOT, "docs", "metrics.md"), "utf8");
    const queries = await deployQueries();
    expect(
      new Set(
        queries
          .filter((q) => q.where.endsWith(".json") || q.where.includes(".json "))
          .map((q) => q.where.split(" ")[0]),
      ).size,
    ).toBe(4);
    const undocumented: string[] = [];
    for (const q of queries)
      for (const name of metricNamesInPromql(q.expr)) {
        const family = name.replace(/_(bucket|sum|count)$/, "");
        const processOwn = /^novacron_(server|agent)_(process|nodejs)_/.test(name);
        if (!documented.includes(`\`${name}\``) && !documented.includes(`\`${family}\``) && !processOwn)
          undocumented.push(`${q.where}: ${name}`);
      }
    expect(undocumented).toEqual([]);
  });
});

describe("the PromQL tokenizer", () => {
  it("finds metric names and skips functions, keywords, labels, strings, durations and variables", () => {
    expect(
      metricNamesInPromql(
        'histogram_quantile(0.9, sum by (le, transport) (rate(a_seconds_bucket{outcome="completed",le="0.3"}[1h]))) > 600',
      ),
    ).toEqual(["a_seconds_bucket"]);
    expect(
      metricNamesInPromql(
        "b_total > 0 and on(instance) delta(c_jobs[30m]) > 0 or d == -1 unless e offset 5m",
      ),
    ).toEqual(["b_total", "c_jobs", "d", "e"]);
    expect(metricNamesInPromql("f - time() < 14 * 86400 + 1e9")).toEqual(["f"]);
    expect(metricNamesInPromql("rate(g_total[$__rate_interval]) / ignoring(x) group_left(y) h")).toEqual([
      "g_total",
      "h",
    ]);
  });

  it("reads the names an exposition offers, histogram series included", () => {
    const names = exposedNames(
      [
        "# HELP x_seconds a histogram",
        "# TYPE x_seconds histogram",
        "# TYPE y_total counter",
        'z{a="1"} 2',
        "w 3",
      ].join("\n"),
    );
    expect([...names].sort()).toEqual(
      ["w", "x_seconds", "x_seconds_bucket", "x_seconds_count", "x_seconds_sum", "y_total", "z"].sort(),
    );
  });
});
