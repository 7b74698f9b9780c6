/**
 * `npm run bench:channels`: how long a small message takes on one DWCP channel while
 * another channel of the same session streams bulk data over an emulated WAN link
 * (per-channel delivery, docs/dwcp.md §4.2). The baseline is the same small messages on
 * the idle session, in the same run. A request of 16 bytes goes out every 100 ms on the
 * "req" channel and the peer answers on it; the round trip is timed at the sender.
 *
 *   --profile NAME   emulated link profile (repeatable; default wan and intercontinental)
 *   --seconds N      request period per load (default 20)
 *   --streams N      connections in the session (default 8)
 *   --json           one JSON object per line: profile, load, samples, rtt_p50_ms,
 *                    rtt_p99_ms, rtt_max_ms, link_rtt_ms, bulk_mbps
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import type { Channel } from "../src/dwcp/amst/channel.js";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { PROFILES, parseLinkSpec, specRttMs } from "../src/testing/wanem/spec.js";
import { printTable } from "./table.js";

const { values } = parseArgs({
  options: {
    profile: { type: "string", multiple: true },
    seconds: { type: "string", default: "20" },
    streams: { type: "string", default: "8" },
    json: { type: "boolean", default: false },
  },
});
const profiles = values.profile ?? ["wan", "intercontinental"];
for (const p of profiles)
  if (!(p in PROFILES)) throw new Error(`Unknown profile ${p}; known: ${Object.keys(PROFILES).join(", ")}`);
const seconds = Number(values.seconds);
const streams = Number(values.streams);
if (!(seconds > 0) || !(streams >= 1)) throw new Error("--seconds and --streams must be positive numbers");

interface Row {
  profile: string;
  load: "idle" | "bulk";
  samples: number;
  rtt_p50_ms: number;
  rtt_p99_ms: number;
  rtt_max_ms: number;
  link_rtt_ms: number;
  bulk_mbps: number | null;
}

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Sends a request every 100 ms for `ms`, one at a time; returns the round trips. */
async function pingFor(req: Channel, ms: number): Promise<number[]> {
  const rtts: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    const msg = Buffer.alloc(16);
    msg.writeDoubleBE(t0, 0);
    await req.send(msg);
    const answer = await req.read();
    if (!answer) throw new Error("the peer closed the request channel");
    rtts.push(performance.now() - t0);
    const wait = t0 + 100 - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  return rtts;
}

async function measure(profile: string): Promise<Row[]> {
  const link = await WanLink.create({ spec: profile });
  try {
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const port = 47700;
    const listener = await DwcpListener.listen({ server: await a.listen(port), tls: dwcpTestTls().listen });
    const [client, server] = await Promise.all([
      dialSession({ connect: () => b.connect(ADDR_A, port), streams, tls: dwcpTestTls().dial }),
      listener.accept(),
    ]);
    const req = client.openChannel("req");
    const bulk = client.openChannel("bulk");
    const rxReq = await server.accept();
    const rxBulk = await server.accept();
    const echo = (async () => {
      for (;;) {
        const m = await rxReq.read();
        if (m === null) return;
        await rxReq.send(m);
      }
    })();
    let bulkBytes = 0;
    const sink = (async () => {
      for (;;) {
        const m = await rxBulk.read();
        if (m === null) return;
        bulkBytes += m.length;
      }
    })();
    const linkRtt = specRttMs(parseLinkSpec(PROFILES[profile as keyof typeof PROFILES]));
    const row = (load: Row["load"], rtts: number[], mbps: number | null): Row => ({
      profile,
      load,
      samples: rtts.length,
      rtt_p50_ms: Math.round(percentile(rtts, 50)),
      rtt_p99_ms: Math.round(percentile(rtts, 99)),
      rtt_max_ms: Math.round(Math.max(...rtts)),
      link_rtt_ms: linkRtt,
      bulk_mbps: mbps,
    });

    log(`${profile}: requests on the idle session for ${seconds} s`);
    await pingFor(req, 1000); // warm-up: connections up, first RTT samples
    const idle = row("idle", await pingFor(req, seconds * 1000), null);

    log(`${profile}: the same requests while "bulk" streams`);
    let streaming = true;
    const chunk = randomBytes(64 * 1024);
    const writer = (async () => {
      while (streaming) await bulk.send(chunk);
    })();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const before = bulkBytes;
    const t0 = performance.now();
    const rtts = await pingFor(req, seconds * 1000);
    const mbps = ((bulkBytes - before) * 8) / ((performance.now() - t0) / 1000) / 1e6;
    streaming = false;
    await writer;
    const loaded = row("bulk", rtts, Math.round(mbps * 10) / 10);

    await bulk.end();
    await req.end();
    await Promise.all([echo, sink]);
    await client.close();
    await listener.close();
    return [idle, loaded];
  } finally {
    await link.close();
  }
}

async function main(): Promise<void> {
  const why = emulatorUnavailableReason();
  if (why) {
    console.log(`bench:channels skipped: ${why}`);
    return;
  }
  const rows: Row[] = [];
  for (const p of profiles) {
    for (const r of await measure(p)) {
      rows.push(r);
      if (values.json) console.log(JSON.stringify(r));
    }
  }
  if (values.json) return;
  const head = [
    "profile",
    "load",
    "samples",
    "RTT p50 ms",
    "RTT p99 ms",
    "max ms",
    "link RTT ms",
    "bulk Mbit/s",
  ];
  const body = rows.map((r) => [
    r.profile,
    r.load,
    String(r.samples),
    String(r.rtt_p50_ms),
    String(r.rtt_p99_ms),
    String(r.rtt_max_ms),
    String(r.link_rtt_ms),
    r.bulk_mbps === null ? "-" : String(r.bulk_mbps),
  ]);
  printTable(head, body);
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
