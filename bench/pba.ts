/**
 * `npm run bench:pba`: how well PBA predicts bandwidth (issue 4). Records goodput traces
 * of a DWCP session saturating an emulated link whose conditions change during the run
 * (rate steps, loss changes, competing TCP traffic), then scores each predictor's MAPE
 * for the mean goodput of the next second against the naive last-value predictor.
 *
 *   --seconds N      length of each scenario (default 40)
 *   --interval MS    sampling interval (default 250)
 *   --save PATH      also write the recorded traces as JSON
 *   --traces PATH    score traces from a file instead of recording (no root needed)
 *   --json           one JSON object per line
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import {
  DampedHolt,
  Ewma,
  evaluate,
  LastValue,
  type Predictor,
  SlidingMedian,
} from "../src/dwcp/pba/predictor.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";

interface Scenario {
  name: string;
  base: string;
  /** [fraction of the run, action]: a link change, or start/stop of competing traffic. */
  events: [number, string][];
}

const SCENARIOS: Scenario[] = [
  {
    name: "rate-steps",
    base: "rate=100mbit,rtt=50ms,loss=0",
    events: [
      [0.2, "rate=40mbit,rtt=50ms,loss=0"],
      [0.4, "rate=80mbit,rtt=50ms,loss=0"],
      [0.6, "rate=20mbit,rtt=50ms,loss=0"],
      [0.8, "rate=60mbit,rtt=50ms,loss=0"],
    ],
  },
  {
    name: "loss-changes",
    base: "rate=50mbit,rtt=100ms,loss=0",
    events: [
      [0.25, "rate=50mbit,rtt=100ms,loss=1%"],
      [0.5, "rate=50mbit,rtt=100ms,loss=0.2%"],
      [0.75, "rate=50mbit,rtt=100ms,loss=2%"],
    ],
  },
  {
    name: "cross-traffic",
    base: "rate=80mbit,rtt=40ms,loss=0.1%",
    events: [
      [0.3, "cross-start"],
      [0.7, "cross-stop"],
    ],
  },
];

interface Trace {
  scenario: string;
  intervalMs: number;
  /** Goodput samples in bytes/s. */
  samples: number[];
}

async function record(s: Scenario, seconds: number, intervalMs: number, port: number): Promise<Trace> {
  const link = await WanLink.create({ spec: s.base, cc: "cubic" });
  const stops: (() => void)[] = [];
  try {
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const listener = await DwcpListener.listen({ server: await a.listen(port), tls: dwcpTestTls().listen });
    const [client, server] = await Promise.all([
      dialSession({
        connect: () => b.connect(ADDR_A, port),
        streams: 4,
        tuning: { windowBytes: 8 << 20 },
        tls: dwcpTestTls().dial,
      }),
      listener.accept(),
    ]);
    const sink = (async () => {
      const ch = await server.accept();
      for await (const _ of ch) {
        // Discard: only the sender's acknowledged bytes are measured.
      }
    })();
    const ch = client.openChannel("bulk");
    const chunk = randomBytes(256 * 1024);
    let running = true;
    const producer = (async () => {
      while (running) await ch.send(chunk);
    })();
    // Competing traffic: one plain TCP flow in the same direction.
    const cross = async (): Promise<void> => {
      const srv = await a.listen(port + 1);
      const accepted = once(srv, "connection") as Promise<[Socket]>;
      const c = await b.connect(ADDR_A, port + 1);
      const [peer] = await accepted;
      peer.resume();
      let on = true;
      stops.push(() => {
        on = false;
        c.destroy();
        peer.destroy();
        srv.close();
      });
      const buf = Buffer.alloc(64 * 1024);
      while (on && !c.destroyed) if (!c.write(buf)) await once(c, "drain").catch(() => undefined);
    };
    const samples: number[] = [];
    const start = performance.now();
    let last = client.stats().bytesReceived;
    let lastAt = start;
    const pending = [...s.events];
    while (performance.now() - start < seconds * 1000) {
      await new Promise((r) => setTimeout(r, intervalMs));
      const now = performance.now();
      const acked = client.stats().bytesReceived;
      samples.push(((acked - last) * 1000) / (now - lastAt));
      last = acked;
      lastAt = now;
      while (pending.length > 0 && (now - start) / 1000 >= pending[0]![0] * seconds) {
        const [, action] = pending.shift()!;
        if (action === "cross-start") void cross();
        else if (action === "cross-stop") for (const f of stops.splice(0)) f();
        else await link.set("both", action);
      }
    }
    running = false;
    for (const f of stops.splice(0)) f();
    client.destroy();
    await producer.catch(() => undefined);
    await sink.catch(() => undefined);
    await listener.close();
    return { scenario: s.name, intervalMs, samples };
  } finally {
    for (const f of stops) f();
    await link.close();
  }
}

const PREDICTORS: (() => Predictor)[] = [
  () => new LastValue(),
  () => new Ewma(0.3),
  () => new Ewma(0.5),
  () => new DampedHolt(),
  () => new SlidingMedian(5),
];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const json = argv.includes("--json");
  const seconds = Number(opt("--seconds") ?? 40);
  const intervalMs = Number(opt("--interval") ?? 250);
  let traces: Trace[];
  const from = opt("--traces");
  if (from) {
    traces = JSON.parse(readFileSync(from, "utf8")) as Trace[];
  } else {
    const why = emulatorUnavailableReason();
    if (why) {
      console.log(`bench:pba skipped: ${why} (use --traces FILE to score recorded traces)`);
      return;
    }
    traces = [];
    let port = 47600;
    for (const s of SCENARIOS) {
      if (!json) console.error(`recording ${s.name} (${seconds} s)...`);
      traces.push(await record(s, seconds, intervalMs, port));
      port += 10;
    }
    const save = opt("--save");
    if (save) writeFileSync(save, `${JSON.stringify(traces)}\n`);
  }
  const horizon = Math.max(1, Math.round(1000 / (traces[0]?.intervalMs ?? 250)));
  const rows: { scenario: string; predictor: string; mape: number; n: number; vs_last_value: number }[] = [];
  for (const t of [...traces, { scenario: "all", intervalMs: 0, samples: [] }]) {
    const scores = PREDICTORS.map((make) => {
      if (t.scenario !== "all") return evaluate(make, t.samples, horizon, 4, 1e5);
      // Pool: average of per-trace MAPEs weighted by their number of predictions.
      let sum = 0;
      let n = 0;
      let name = "";
      for (const tr of traces) {
        const e = evaluate(make, tr.samples, horizon, 4, 1e5);
        sum += e.mape * e.n;
        n += e.n;
        name = e.name;
      }
      return { name, mape: sum / n, n };
    });
    const naive = scores[0]!.mape;
    for (const s of scores)
      rows.push({
        scenario: t.scenario,
        predictor: s.name,
        mape: Number(s.mape.toFixed(2)),
        n: s.n,
        vs_last_value: Number((s.mape / naive).toFixed(3)),
      });
  }
  if (json) {
    for (const r of rows)
      console.log(JSON.stringify({ ...r, horizon_ms: horizon * (traces[0]?.intervalMs ?? 250) }));
    return;
  }
  console.log(
    `MAPE of the predicted mean goodput over the next ${horizon * (traces[0]?.intervalMs ?? 250)} ms (lower is better)`,
  );
  console.log(
    `${"scenario".padEnd(14)}${"predictor".padEnd(20)}${"MAPE %".padStart(8)}${"vs last-value".padStart(15)}${"n".padStart(6)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.scenario.padEnd(14)}${r.predictor.padEnd(20)}${r.mape.toFixed(1).padStart(8)}${r.vs_last_value.toFixed(2).padStart(15)}${String(r.n).padStart(6)}`,
    );
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
