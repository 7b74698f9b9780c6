/**
 * One end of one measurement of `bench:dwcp`. The receiver (site A) and the sender (site
 * B) run in separate processes, as they would on two hosts, so each end has its own CPU
 * and its own RSS; their sockets are created inside the namespaces, so every byte crosses
 * the emulated link. Input: one JSON argument (RunSpec). Output: for the receiver a
 * `{"ready":true}` line once it listens; then one JSON line (EndResult) on stdout.
 */
import { once } from "node:events";
import type { Socket } from "node:net";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { CompressStream, DecompressStream } from "zstd-napi";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import { PageHistory } from "../src/dwcp/hde/history.js";
import { PAGE_SIZE } from "../src/dwcp/hde/page.js";
import { PageCache } from "../src/dwcp/hde/page-cache.js";
import { PageReceiver } from "../src/dwcp/hde/page-receiver.js";
import { PageSender } from "../src/dwcp/hde/page-sender.js";
import { Tuner, type TunerState } from "../src/dwcp/tuner.js";
import { mix32, SyntheticImage } from "../src/testing/synthetic-image.js";
import { NamespaceSockets } from "../src/testing/wanem/broker.js";
import { ADDR_A } from "../src/testing/wanem/link.js";

/** What to measure, and which end of it this process is. */
export interface RunSpec {
  /** `dwcp` runs mutual TLS 1.3 (`tls`); `dwcp-plaintext` is the same without TLS. */
  method: "tcp" | "tcp-zstd" | "dwcp" | "dwcp-plaintext";
  /** The receiver (site A) starts first and prints a ready line; then the sender (site B). */
  role: "send" | "receive";
  pass: 1 | 2;
  pages: number;
  nsA: string;
  nsB: string;
  port: number;
  /** Receiver cache and sender history live here (kept between passes). */
  stateDir: string;
  maxSeconds: number;
  /** PEM material for `dwcp`: the CA and one leaf per end (each also used as client certificate). */
  tls?: { ca: string; receiver: { cert: string; key: string }; sender: { cert: string; key: string } };
}

/** What one end measured; the parent merges the two ends into one row. */
export interface EndResult {
  /** Input bytes sent (sender) or delivered (receiver). */
  bytes: number;
  /** TCP payload bytes this end counted, if it counts them (DWCP: sender; TCP: receiver). */
  wire: number | null;
  /** Sender: start until the receiver confirmed everything. Receiver: its own view. */
  seconds: number;
  /** Order-independent check of the pages (DWCP) or CRC-32 of the stream (TCP). */
  check: number;
  complete: boolean;
  cpu_seconds: number;
  max_rss_mb: number;
  detail: Record<string, unknown>;
}

/** What was measured (both ends merged). */
export interface RunResult {
  bytes_in: number;
  bytes_on_wire: number;
  seconds: number;
  goodput_mbps: number;
  cpu_seconds: number;
  max_rss_mb: number;
  verified: boolean;
  complete: boolean;
  detail: Record<string, unknown>;
}

type EndRun = Omit<EndResult, "cpu_seconds" | "max_rss_mb">;

const CHUNK_PAGES = 256;

/** Tells the parent this end is listening (receiver only). */
function ready(): void {
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
}

async function receiveTcp(spec: RunSpec, ns: NamespaceSockets, zstd: boolean): Promise<EndRun> {
  const server = await ns.listen(spec.port);
  const accepted = once(server, "connection") as Promise<[Socket]>;
  ready();
  const [conn] = await accepted;
  // The sender half-closes after its last byte; this end answers on its own half.
  conn.allowHalfOpen = true;
  server.close();
  const start = performance.now();
  let wire = 0;
  let check = 0;
  let bytes = 0;
  conn.on("data", (d: Buffer) => {
    wire += d.length;
  });
  const source = zstd ? conn.pipe(new DecompressStream()) : conn;
  await new Promise<void>((resolve, reject) => {
    source.on("data", (d: Buffer) => {
      check = crc32(d, check);
      bytes += d.length;
    });
    source.on("end", () => resolve());
    source.on("error", reject);
    conn.on("error", reject);
  });
  // One byte back: the sender's clock stops when everything arrived, not when it was written.
  conn.end(Buffer.from([1]));
  await once(conn, "close");
  return { bytes, wire, seconds: (performance.now() - start) / 1000, check, complete: true, detail: {} };
}

async function sendTcp(spec: RunSpec, image: SyntheticImage, ns: NamespaceSockets, zstd: boolean) {
  const client = await ns.connect(ADDR_A, spec.port);
  const confirmed = new Promise<void>((resolve, reject) => {
    client.once("data", () => resolve());
    client.once("error", reject);
    client.once("end", () => reject(new Error("the receiver closed without confirming")));
  });
  const sink = zstd ? new CompressStream({ compressionLevel: 1 }) : client;
  if (zstd) sink.pipe(client);
  let check = 0;
  const start = performance.now();
  let sent = 0;
  let complete = true;
  const buf = Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE);
  for (let p = 0; p < image.pageCount; p += CHUNK_PAGES) {
    if ((performance.now() - start) / 1000 > spec.maxSeconds) {
      complete = false;
      break;
    }
    const n = Math.min(CHUNK_PAGES, image.pageCount - p);
    // A fresh buffer per write: the socket keeps a reference until the kernel takes it.
    const chunk = Buffer.from(image.read(p, buf.subarray(0, n * PAGE_SIZE)));
    check = crc32(chunk, check);
    sent += chunk.length;
    if (!sink.write(chunk)) await once(sink, "drain");
  }
  sink.end();
  await confirmed;
  const seconds = (performance.now() - start) / 1000;
  client.destroy();
  return { bytes: sent, wire: null, seconds, check, complete, detail: {} };
}

let peakMemory = { rss: 0, heap: 0, external: 0, arrayBuffers: 0 };

function trackMemory(): NodeJS.Timeout {
  return setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss / 2 ** 20 > peakMemory.rss) {
      peakMemory = {
        rss: Math.round(m.rss / 2 ** 20),
        heap: Math.round(m.heapUsed / 2 ** 20),
        external: Math.round(m.external / 2 ** 20),
        arrayBuffers: Math.round(m.arrayBuffers / 2 ** 20),
      };
    }
  }, 500);
}

async function receiveDwcp(spec: RunSpec, ns: NamespaceSockets): Promise<EndRun> {
  const tls = spec.method === "dwcp" ? spec.tls : undefined;
  const listener = await DwcpListener.listen({
    server: await ns.listen(spec.port),
    ...(tls ? { tls: { ca: tls.ca, ...tls.receiver, requestCert: true, rejectUnauthorized: true } } : {}),
  });
  ready();
  const session = await listener.accept();
  const start = performance.now();
  const memTimer = trackMemory();
  const cache = new PageCache(join(spec.stateDir, "receiver-cache"), 2 * 1024 ** 3);
  // Order-independent check of what the sink got: XOR of mix(pageNo, crc32(page)).
  let check = 0;
  let pages = 0;
  const ch = await session.accept();
  const received = await new PageReceiver(ch, {
    cache,
    sink: {
      write: (n, page) => {
        check ^= mix32(n, crc32(page));
        pages++;
      },
    },
  }).run();
  const seconds = (performance.now() - start) / 1000;
  // The sender closes the session once it has its answer; wait for that, bounded.
  await Promise.race([session.closed, new Promise((r) => setTimeout(r, 10_000).unref())]);
  clearInterval(memTimer);
  await listener.close();
  cache.close();
  return {
    bytes: pages * PAGE_SIZE,
    wire: null,
    seconds,
    check,
    complete: true,
    detail: { misses: received.misses, peak_memory_mb: peakMemory },
  };
}

async function sendDwcp(spec: RunSpec, image: SyntheticImage, ns: NamespaceSockets): Promise<EndRun> {
  const tls = spec.method === "dwcp" ? spec.tls : undefined;
  const client = await dialSession({
    connect: () => ns.connect(ADDR_A, spec.port),
    streams: 1,
    ...(tls ? { tls: { ca: tls.ca, ...tls.sender, checkServerIdentity: () => undefined } } : {}),
  });
  const history = new PageHistory(new PageCache(join(spec.stateDir, "sender-history"), 2 * 1024 ** 3));
  history.load(join(spec.stateDir, "history.bin"));
  const start = performance.now();
  const sender = new PageSender(client.openChannel("mem"), {
    source: { readPage: (n) => image.page(n) },
    history,
  });
  await sender.start();
  const trace: TunerState[] = [];
  const memTimer = trackMemory();
  const tuner = new Tuner(client, [sender.zstd], { onSample: (s) => trace.push(s) });
  await tuner.ready;
  let check = 0;
  let complete = true;
  let pages = 0;
  const buf = Buffer.allocUnsafe(PAGE_SIZE);
  for (let n = 0; n < image.pageCount; n++) {
    if ((n & 1023) === 0 && (performance.now() - start) / 1000 > spec.maxSeconds) {
      complete = false;
      break;
    }
    const page = image.page(n, buf);
    check ^= mix32(n, crc32(page));
    await sender.writePage(n, page);
    pages++;
  }
  const sent = await sender.finish();
  const seconds = (performance.now() - start) / 1000;
  tuner.stop();
  clearInterval(memTimer);
  const stats = client.stats();
  await client.close();
  history.save(join(spec.stateDir, "history.bin"));
  history.store.close();
  const last = trace.at(-1);
  return {
    bytes: pages * PAGE_SIZE,
    wire: stats.bytesWritten,
    seconds,
    check,
    complete,
    detail: {
      hde: sent,
      streams: last?.streams,
      mode: last?.mode,
      level: last?.level,
      max_streams: Math.max(0, ...trace.map((t) => t.streams)),
      resent_frames: stats.framesResent,
      probe_bytes: stats.probeBytes,
      replaced_connections: stats.connectionsReplaced,
      prediction_mape: last?.mape,
      probed_mbps: last ? Math.round((last.probedBps * 8) / 1e6) : undefined,
      ...(process.env.NC_DWCP_TRACE
        ? {
            trace: trace.map((t) => [
              t.streams,
              Math.round((t.goodputBps * 8) / 1e6),
              t.backlogged ? 1 : 0,
              t.level,
            ]),
          }
        : {}),
      peak_memory_mb: peakMemory,
    },
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "{}") as RunSpec;
  const ns = await NamespaceSockets.start(spec.role === "receive" ? spec.nsA : spec.nsB);
  const cpu0 = process.cpuUsage();
  try {
    let r: EndRun;
    if (spec.role === "receive") {
      r =
        spec.method === "dwcp" || spec.method === "dwcp-plaintext"
          ? await receiveDwcp(spec, ns)
          : await receiveTcp(spec, ns, spec.method === "tcp-zstd");
    } else {
      const image = new SyntheticImage({ pages: spec.pages, changedFraction: spec.pass === 2 ? 0.1 : 0 });
      r =
        spec.method === "dwcp" || spec.method === "dwcp-plaintext"
          ? await sendDwcp(spec, image, ns)
          : await sendTcp(spec, image, ns, spec.method === "tcp-zstd");
    }
    const cpu = process.cpuUsage(cpu0);
    const result: EndResult = {
      ...r,
      cpu_seconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
      max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    ns.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
