/**
 * One measurement of `bench:dwcp`, run in its own process so CPU time and peak RSS belong
 * to that method alone. Sender (site B) and receiver (site A) both live in this process;
 * their sockets are created inside the namespaces, so every byte crosses the emulated link.
 * Input: one JSON argument (RunSpec). Output: one JSON line (RunResult) on stdout.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdirSync } from "node:fs";
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
import { mix32, SyntheticImage } from "../src/dwcp/testing/synthetic-image.js";
import { Tuner, type TunerState } from "../src/dwcp/tuner.js";
import { NamespaceSockets } from "../src/dwcp/wanem/broker.js";
import { ADDR_A } from "../src/dwcp/wanem/link.js";

/** What to measure. */
export interface RunSpec {
  method: "tcp" | "tcp-zstd" | "dwcp";
  pass: 1 | 2;
  pages: number;
  nsA: string;
  nsB: string;
  port: number;
  /** Receiver cache and sender history live here (kept between passes). */
  stateDir: string;
  maxSeconds: number;
}

/** What was measured. */
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

const CHUNK_PAGES = 256;

async function runTcp(
  spec: RunSpec,
  image: SyntheticImage,
  a: NamespaceSockets,
  b: NamespaceSockets,
  zstd: boolean,
) {
  const server = await a.listen(spec.port);
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const client = await b.connect(ADDR_A, spec.port);
  const [conn] = await accepted;
  server.close();
  let wire = 0;
  const rxHash = createHash("sha256");
  let rxBytes = 0;
  conn.on("data", (d: Buffer) => {
    wire += d.length;
  });
  const source = zstd ? conn.pipe(new DecompressStream()) : conn;
  const received = new Promise<void>((resolve, reject) => {
    source.on("data", (d: Buffer) => {
      rxHash.update(d);
      rxBytes += d.length;
    });
    source.on("end", () => resolve());
    source.on("error", reject);
    conn.on("error", reject);
  });
  const sink = zstd ? new CompressStream({ compressionLevel: 1 }) : client;
  if (zstd) sink.pipe(client);
  const txHash = createHash("sha256");
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
    txHash.update(chunk);
    sent += chunk.length;
    if (!sink.write(chunk)) await once(sink, "drain");
  }
  sink.end();
  await received;
  const seconds = (performance.now() - start) / 1000;
  client.destroy();
  conn.destroy();
  return {
    bytesIn: sent,
    wire,
    seconds,
    complete,
    verified: rxBytes === sent && rxHash.digest().equals(txHash.digest()),
    detail: {},
  };
}

let peakMemory = { rss: 0, heap: 0, external: 0, arrayBuffers: 0 };

async function runDwcp(spec: RunSpec, image: SyntheticImage, a: NamespaceSockets, b: NamespaceSockets) {
  mkdirSync(spec.stateDir, { recursive: true });
  const listener = await DwcpListener.listen({ server: await a.listen(spec.port) });
  const [client, server] = await Promise.all([
    dialSession({ connect: () => b.connect(ADDR_A, spec.port), streams: 1 }),
    listener.accept(),
  ]);
  const cache = new PageCache(join(spec.stateDir, "receiver-cache"), 2 * 1024 ** 3);
  const history = new PageHistory(new PageCache(join(spec.stateDir, "sender-history"), 2 * 1024 ** 3));
  history.load(join(spec.stateDir, "history.bin"));
  // Order-independent check of what the sink got: XOR of mix(pageNo, crc32(page)).
  let rxCheck = 0;
  let rxPages = 0;
  const receiving = (async () => {
    const ch = await server.accept();
    return new PageReceiver(ch, {
      cache,
      sink: {
        write: (n, page) => {
          rxCheck ^= mix32(n, crc32(page));
          rxPages++;
        },
      },
    }).run();
  })();
  const start = performance.now();
  const sender = new PageSender(client.openChannel("mem"), {
    source: { readPage: (n) => image.page(n) },
    history,
  });
  await sender.start();
  const trace: TunerState[] = [];
  const memTimer = setInterval(() => {
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
  const tuner = new Tuner(client, [sender.zstd], { onSample: (s) => trace.push(s) });
  await tuner.ready;
  let txCheck = 0;
  let complete = true;
  let pages = 0;
  const buf = Buffer.allocUnsafe(PAGE_SIZE);
  for (let n = 0; n < image.pageCount; n++) {
    if ((n & 1023) === 0 && (performance.now() - start) / 1000 > spec.maxSeconds) {
      complete = false;
      break;
    }
    const page = image.page(n, buf);
    txCheck ^= mix32(n, crc32(page));
    await sender.writePage(n, page);
    pages++;
  }
  const sent = await sender.finish();
  const received = await receiving;
  const seconds = (performance.now() - start) / 1000;
  tuner.stop();
  clearInterval(memTimer);
  const stats = client.stats();
  await client.close();
  await listener.close();
  cache.close();
  history.save(join(spec.stateDir, "history.bin"));
  history.store.close();
  const last = trace.at(-1);
  return {
    bytesIn: pages * PAGE_SIZE,
    wire: stats.bytesWritten,
    seconds,
    complete,
    verified: rxPages === pages && rxCheck === txCheck,
    detail: {
      hde: sent,
      misses: received.misses,
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
  const image = new SyntheticImage({ pages: spec.pages, changedFraction: spec.pass === 2 ? 0.1 : 0 });
  const [a, b] = await Promise.all([NamespaceSockets.start(spec.nsA), NamespaceSockets.start(spec.nsB)]);
  const cpu0 = process.cpuUsage();
  try {
    const r =
      spec.method === "dwcp"
        ? await runDwcp(spec, image, a, b)
        : await runTcp(spec, image, a, b, spec.method === "tcp-zstd");
    const cpu = process.cpuUsage(cpu0);
    const result: RunResult = {
      bytes_in: r.bytesIn,
      bytes_on_wire: r.wire,
      seconds: Number(r.seconds.toFixed(3)),
      goodput_mbps: Number(((r.bytesIn * 8) / r.seconds / 1e6).toFixed(2)),
      cpu_seconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
      max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      verified: r.verified,
      complete: r.complete,
      detail: r.detail,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    a.close();
    b.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
