/**
 * `npm run bench:rebalance`: the rebalancer's planner (src/placement/rebalance-plan.ts)
 * driven over synthetic load traces by the simulation in src/testing/rebalance-sim.ts,
 * side by side in one run with no rebalancer (`off`) and a threshold-only rebalancer
 * (`naive`: no hold, no margin, no cooldown, no caps), on the same fleet and traces
 * (issue 17, item 2: migrations counted, imbalance shrinking, no ping-pong).
 *
 * Scenarios: `bursts` (VMs jump to 3-4 cores for 1-10 minutes, a few times a day),
 * `diurnal` (four time zones of tenants, each a daily wave), `host-failure` (a host dies
 * at a quarter of the run; its VMs restart first-fit on the survivors). Each host has
 * 16 vCPUs and 64 GiB; VMs are placed by memory alone, so CPU starts uneven. A pass runs
 * every 30 s, a migration takes 90 s, utilization is averaged over the settings' window.
 *
 *   --hosts N      (default 20)    --vms N (default 200)    --hours N (default 24)
 *   --seeds LIST   seeds to run, each a different fleet and traces (default 1,2,3);
 *                  medians over the seeds are printed
 *   --json         one JSON object per line per scenario, policy and seed: {scenario, policy,
 *                  seed, hosts, vms, hours, migrations, ping_pongs, mean_std_dev,
 *                  mean_peak_excess, overloaded_host_hours, first_hour_std_dev,
 *                  last_hour_std_dev, failure_peak_excess_10min, failure_peak_excess_next_hour}
 */
import { POLICIES, type Policy, SCENARIOS, type SimResult, simulate } from "../src/testing/rebalance-sim.js";
import { median, printTable } from "./table.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function main(): void {
  const hosts = Number(arg("hosts") ?? 20);
  const vms = Number(arg("vms") ?? 200);
  const hours = Number(arg("hours") ?? 24);
  const seeds = (arg("seeds") ?? "1,2,3").split(",").map(Number);
  const json = process.argv.includes("--json");
  const body: string[][] = [];
  for (const scenario of SCENARIOS)
    for (const policy of Object.keys(POLICIES) as Policy[]) {
      const results: SimResult[] = [];
      for (const seed of seeds) {
        const r = simulate({ scenario, policy, hosts, vms, hours, seed });
        results.push(r);
        if (json)
          console.log(
            JSON.stringify({
              scenario,
              policy,
              seed,
              hosts,
              vms,
              hours,
              migrations: r.migrations,
              ping_pongs: r.pingPongs,
              mean_std_dev: r.meanStdDev,
              mean_peak_excess: r.meanPeakExcess,
              overloaded_host_hours: r.overloadedHostHours,
              first_hour_std_dev: r.firstHourStdDev,
              last_hour_std_dev: r.lastHourStdDev,
              ...(r.afterFailure
                ? {
                    failure_peak_excess_10min: r.afterFailure.first10MinPeakExcess,
                    failure_peak_excess_next_hour: r.afterFailure.nextHourPeakExcess,
                  }
                : {}),
            }),
          );
      }
      const med = (f: (r: SimResult) => number | undefined): string => {
        const xs = results.map(f).filter((x): x is number => x !== undefined);
        const m = median(xs);
        return m === null ? "-" : String(Math.round(m * 1000) / 1000);
      };
      body.push([
        scenario,
        policy,
        med((r) => r.migrations),
        med((r) => r.pingPongs),
        med((r) => r.meanStdDev),
        med((r) => r.meanPeakExcess),
        med((r) => r.overloadedHostHours),
        `${med((r) => r.firstHourStdDev)} → ${med((r) => r.lastHourStdDev)}`,
        scenario === "host-failure"
          ? `${med((r) => r.afterFailure?.first10MinPeakExcess)} → ${med((r) => r.afterFailure?.nextHourPeakExcess)}`
          : "",
      ]);
    }
  if (json) return;
  console.log(
    `${hosts} hosts, ${vms} VMs, ${hours} h simulated, seeds ${seeds.join(",")}: medians over the seeds`,
  );
  printTable(
    [
      "scenario",
      "policy",
      "migrations",
      "ping-pongs",
      "mean σ",
      "peak excess",
      "host-hours >100%",
      "σ first h → last h",
      "after failure: excess 10 min → next h",
    ],
    body,
  );
}

main();
