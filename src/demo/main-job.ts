/**
 * The main job (`npm run demo`): starts a server (embedded PGlite) and two agents on this
 * machine, imports the guest image, creates a VM running the guest workload, waits for it
 * with visible progress, shows `vm list` and the guest's console heartbeat, live-migrates
 * it to the other host with a progress bar and shows that the guest's heartbeat went on
 * and its integrity check passed there, then leaves everything running until Ctrl-C and
 * stops it all cleanly. `--once` does the same work, then cleans up and exits 0 only if
 * the guest printed its integrity PASS at the destination.
 *
 * As root the cluster ("east") runs in site A, one of two network namespaces joined by an
 * emulated WAN (100 Mbit/s, 50 ms RTT, 0.1 % loss), and the demo goes on: two more agents,
 * one in each site, a second VM migrated there and back over DWCP, chosen by the measured
 * path (this file's wanPart); then a second cluster, west, in site B, peered with east, and
 * a third VM live-migrated from east to west with its ownership (federation-part.ts). Not
 * as root it says why it skips those parts.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { describeError } from "../lib/errors.js";
import { waitFor } from "../lib/wait.js";
import { ADDR_A, ADDR_B, WanLink } from "../testing/wanem/link.js";
import { emulatorUnavailableReason } from "../testing/wanem/netns.js";
import { eastServerFlags, FED_VM, federationPart, federationPorts } from "./federation-part.js";
import { guestImageManifest, LocalCluster } from "./local-cluster.js";
import { say, show } from "./narrate.js";

const USAGE = `Usage: npm run demo -- [--once] [--port N] [--data-dir DIR]
  --once          do the whole job, then stop everything and exit (for CI)
  --port N        server port; agents use N+101 and N+102 (default 7700); as root also
                  N+1 (east's federation), N+10 and N+11 (west's server), N+103 to
                  N+105 (agents in the sites), all inside the sites' network namespaces
  --data-dir DIR  keep the cluster's data here (default: a new temp dir)`;

const VM_NAME = "demo-vm";
const WAN_VM = "demo-wan";
// A busy guest across the WAN too: its dirtier makes pre-copy take several passes.
const WAN_WORKLOAD =
  "nc.dirty_mb=32 nc.dirty_rate_mbps=1 nc.pattern_seed=2027 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=3";
const WORKLOAD =
  "nc.dirty_mb=32 nc.dirty_rate_mbps=4 nc.mix=zero:30,text:40,random:30 nc.pattern_seed=2026 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=5";

async function main(): Promise<number> {
  let opts: { once: boolean; port: number; dataDir?: string };
  try {
    const { values } = parseArgs({
      options: {
        once: { type: "boolean", default: false },
        port: { type: "string", default: "7700" },
        "data-dir": { type: "string" },
        help: { type: "boolean" },
      },
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 1 || port > 65_000)
      throw new Error(`--port must be a port number, got ${values.port}`);
    opts = {
      once: Boolean(values.once),
      port,
      ...(values["data-dir"] ? { dataDir: path.resolve(values["data-dir"]) } : {}),
    };
  } catch (err) {
    process.stderr.write(`demo: ${describeError(err)}\n${USAGE}\n`);
    return 2;
  }

  const c = await LocalCluster.create(opts.port, opts.dataDir);
  let interrupted = false;
  const stopSignal = new Promise<void>((resolve) => {
    const onSignal = () => {
      interrupted = true;
      resolve();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });

  const wanUnavailable = emulatorUnavailableReason();
  let link: WanLink | null = null;
  let west: LocalCluster | null = null;
  try {
    say("Guest image (images/build.sh: Debian kernel + busybox + the NovaCron workload)");
    const manifest = await guestImageManifest();
    process.stdout.write(`manifest: ${manifest}\n`);

    // As root the cluster lives in site A from the start: its server's federation listener
    // must sit on the emulated link for the federation part. This process and the agents
    // in site B reach the server over the unemulated management network.
    if (!wanUnavailable) link = await WanLink.create({ spec: "wan", management: true });
    const siteA = link ? { netns: link.nsA } : {};
    say(
      `Starting cluster east: a server (embedded PGlite in ${c.dir}/server) and two agents${link ? ", in site A (a network namespace)" : ""}`,
    );
    await c.startServer(
      link ? eastServerFlags(opts.port) : ["--cluster-name", "east"],
      link ? { ...siteA, listenHost: "0.0.0.0", reachAt: link.management!.a } : {},
    );
    process.stdout.write(`server: ${c.serverUrl}\n`);
    await c.startAgent("host-a", opts.port + 101, ["--memory", "2048", "--stop-grace", "20"], siteA);
    await c.startAgent("host-b", opts.port + 102, ["--memory", "2048", "--stop-grace", "20"], siteA);
    await waitFor(
      async () => {
        const { body } = await c.api<{ hosts: { liveness: string }[] }>("GET", "/v1/hosts");
        return body.hosts.length === 2 && body.hosts.every((h) => h.liveness === "alive");
      },
      { timeoutMs: 30_000, what: "both agents to register" },
    );
    await show(c, ["host", "list"]);

    say("Importing the guest image into both hosts' image stores");
    await show(c, ["image", "import", "guest", "--manifest", manifest]);
    await show(c, ["image", "list"]);

    say("Creating a VM that runs the workload (dirties memory, writes and verifies a pattern)");
    await show(c, [
      "vm",
      "create",
      VM_NAME,
      "--image",
      "guest",
      "--memory",
      "256",
      "--kernel-args",
      WORKLOAD,
      "--wait",
      "--timeout",
      "180",
    ]);
    await show(c, ["vm", "list"]);

    say("The guest's serial console: heartbeat, workload, integrity verdict");
    await c.waitConsole(VM_NAME, /NC-HEARTBEAT seq=3 /, 90_000);
    await c.waitConsole(VM_NAME, /NC-VERIFY (PASS|FAIL)/, 90_000);
    const res = await show(c, ["vm", "console", VM_NAME, "--lines", "12"]);
    if (/NC-VERIFY FAIL/.test(res.stdout)) throw new Error("the guest reported NC-VERIFY FAIL");

    say("Live-migrating the VM to the other host while its workload keeps dirtying memory");
    const before = await c.vm(VM_NAME);
    const lastSeq = lastHeartbeat(await c.console(VM_NAME, 50));
    await show(c, ["vm", "migrate", VM_NAME, "--follow"]);
    const after = await c.vm(VM_NAME);
    if (after?.host === before?.host) throw new Error("the VM did not move");
    await show(c, ["vm", "list"]);

    say(
      `The guest's console on ${String(after?.host)}: heartbeat unbroken, integrity verified after the move`,
    );
    await c.waitConsole(VM_NAME, /NC-VERIFY (PASS|FAIL) .*round=/, 60_000);
    const moved = await c.console(VM_NAME, 12);
    for (const line of moved) process.stdout.write(`${line}\n`);
    const verdicts = moved.filter((l) => l.startsWith("NC-VERIFY"));
    if (verdicts.length === 0 || verdicts.some((l) => l.includes("FAIL")))
      throw new Error("the guest did not print NC-VERIFY PASS at the destination");
    if (moved.some((l) => l.startsWith("NC-READY")))
      throw new Error("the guest rebooted during the migration");
    const firstSeqThere = firstHeartbeat(await c.console(VM_NAME, 2000));
    process.stdout.write(
      `Heartbeat: last seen on ${String(before?.host)} seq=${lastSeq}, on ${String(after?.host)} seq=${firstSeqThere} onward, no reboot; NC-VERIFY PASS at the destination\n`,
    );

    if (!link) {
      say("Across an emulated WAN with DWCP: skipped");
      process.stdout.write(
        `${wanUnavailable}. Run the demo as root to see a VM cross an emulated 100 Mbit/s, 50 ms, 0.1 % loss link over DWCP.\n`,
      );
      say("Two clusters in two sites, a VM live-migrated between them: skipped");
      process.stdout.write(
        `${wanUnavailable}. Run the demo as root to see cluster east hand a running VM over to cluster west across the emulated link.\n`,
      );
    } else {
      await wanPart(c, link, opts.port);
      west = await LocalCluster.create(federationPorts(opts.port).west, path.join(c.dir, "west"));
      await federationPart(c, west, link, opts.port);
    }

    if (opts.once) {
      say("--once: stopping and deleting the VMs, then the agents and the servers");
      if (west) await show(west, ["vm", "delete", FED_VM, "--wait", "--timeout", "60"], "west");
      await show(c, ["vm", "stop", VM_NAME, "--wait", "--timeout", "60"]);
      await show(c, ["vm", "delete", VM_NAME, "--wait", "--timeout", "60"]);
      return 0;
    }

    say("Everything is running. In another terminal:");
    process.stdout.write(
      [
        `  export NOVACRON_SERVER=${c.serverUrl} NOVACRON_TOKEN=$(cat ${c.dir}/server/admin.token) NOVACRON_CA_FILE=${c.caFile}`,
        `  node bin/novacron.js vm list`,
        `  node bin/novacron.js vm console ${VM_NAME} --follow`,
        ...(west
          ? [
              "Cluster west (where demo-fed runs now):",
              `  NOVACRON_SERVER=${west.serverUrl} NOVACRON_TOKEN=$(cat ${west.dir}/server/admin.token) NOVACRON_CA_FILE=${west.caFile} node bin/novacron.js vm list --all-clusters`,
            ]
          : []),
        "Following the console here; press Ctrl-C to stop everything.",
        "",
      ].join("\n"),
    );
    let seen: string[] = await c.console(VM_NAME, 5);
    while (!interrupted) {
      await Promise.race([stopSignal, new Promise((r) => setTimeout(r, 1000))]);
      if (interrupted) break;
      const next = await c.console(VM_NAME, 100);
      const last = seen.at(-1);
      const at = last === undefined ? -1 : next.lastIndexOf(last);
      for (const line of at === -1 ? next : next.slice(at + 1)) process.stdout.write(`${line}\n`);
      seen = next;
    }
    say("Stopping: deleting the VM, then the agents and the server");
    await show(c, ["vm", "delete", VM_NAME, "--wait", "--timeout", "60"]).catch(() => {});
    return 0;
  } catch (err) {
    process.stderr.write(`\ndemo failed: ${describeError(err)}\n`);
    for (const [cluster, x] of [
      ["east", c],
      ["west", west],
    ] as const) {
      for (const [name, d] of x?.daemons ?? []) {
        process.stderr.write(`--- last lines of ${cluster} ${name} ---\n${d.output.slice(-15).join("\n")}\n`);
      }
    }
    return 1;
  } finally {
    // West's data dir is inside east's: its QEMUs are killed and its files removed with east's.
    for (const name of [...(west?.daemons.keys() ?? [])].reverse()) await west!.stop(name, "SIGTERM");
    for (const name of [...c.daemons.keys()].reverse()) await c.stop(name, "SIGTERM");
    if (!opts.dataDir) await c.destroy();
    else await c.killQemus();
    await link?.close();
  }
}

/** Two more hosts in two sites joined by the emulated WAN; a VM crosses it over DWCP and back. */
async function wanPart(c: LocalCluster, link: WanLink, port: number): Promise<void> {
  const net = link.management!;
  say(
    `Across an emulated WAN (${link.spec.name}: 100 Mbit/s, 50 ms RTT, 0.1 % loss): host-c in site A, host-d in site B`,
  );
  process.stdout.write(
    "Control traffic runs on an unemulated management network; migrations cross the emulated link.\n",
  );
  for (const [name, ns, mgmt, data, p] of [
    ["host-c", link.nsA, net.a, ADDR_A, port + 103],
    ["host-d", link.nsB, net.b, ADDR_B, port + 104],
  ] as const) {
    await c.startAgent(name, p, ["--memory", "1024", "--stop-grace", "10", "--data-address", data], {
      netns: ns,
      host: mgmt,
    });
  }
  await waitFor(
    async () => {
      const { body } = await c.api<{ hosts: { liveness: string }[] }>("GET", "/v1/hosts");
      return body.hosts.length === 4 && body.hosts.every((h) => h.liveness === "alive");
    },
    { timeoutMs: 30_000, what: "the WAN agents to register" },
  );
  await show(c, [
    "image",
    "import",
    "guest-wan",
    "--manifest",
    await guestImageManifest(),
    "--host",
    "host-c",
  ]);
  // Placement would pick host-a or host-b (they hold the same image blob): cordon them
  // while the WAN VM is placed, so that it starts in site A.
  await show(c, ["host", "cordon", "host-a"]);
  await show(c, ["host", "cordon", "host-b"]);
  await show(c, [
    "vm",
    "create",
    WAN_VM,
    "--image",
    "guest-wan",
    "--memory",
    "256",
    "--kernel-args",
    WAN_WORKLOAD,
    "--wait",
    "--timeout",
    "180",
  ]);
  await show(c, ["host", "uncordon", "host-a"]);
  await show(c, ["host", "uncordon", "host-b"]);
  await c.waitConsole(WAN_VM, /NC-VERIFY PASS .*round=1/, 90_000);
  say("Migrating it to host-d across the WAN; transport auto measures the path and picks DWCP");
  await show(c, ["vm", "migrate", WAN_VM, "--to", "host-d", "--follow"]);
  say("And back to host-c: its page cache already holds the VM's pages, so little crosses the link");
  await show(c, ["vm", "migrate", WAN_VM, "--to", "host-c", "--follow"]);
  await show(c, ["migration", "list"]);
  await c.waitConsole(WAN_VM, /NC-VERIFY (PASS|FAIL) .*round=/, 60_000);
  const lines = await c.console(WAN_VM, 12);
  for (const line of lines) process.stdout.write(`${line}\n`);
  if (lines.some((l) => l.includes("NC-VERIFY FAIL") || l.startsWith("NC-READY")))
    throw new Error(`${WAN_VM} did not arrive intact`);
  process.stdout.write(`${WAN_VM}: NC-VERIFY PASS after two WAN migrations over DWCP, no reboot\n`);
  // Its part is done: the CPUs (two TCG guests at most) go to the next part's VM.
  await show(c, ["vm", "delete", WAN_VM, "--wait", "--timeout", "60"]);
}

function lastHeartbeat(lines: string[]): number | undefined {
  const beats = lines
    .map((l) => /^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);
  return beats.length ? Number(beats[beats.length - 1]) : undefined;
}

function firstHeartbeat(lines: string[]): number | undefined {
  const beat = lines.map((l) => /^NC-HEARTBEAT seq=(\d+)/.exec(l)?.[1]).find((x) => x !== undefined);
  return beat === undefined ? undefined : Number(beat);
}

process.exitCode = await main();
