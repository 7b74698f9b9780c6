/**
 * Entry point of an HDE worker thread (worker-pool.ts): runs the pure jobs of
 * hde-jobs.ts one at a time, in arrival order, and hands results back with their
 * ArrayBuffers transferred. Holds one zstd context per level and one decompression
 * context for the thread's life, as the inline code does per page stream.
 */
import { parentPort } from "node:worker_threads";
import { BoundedDecompressor, LevelCompressors } from "./codec.js";
import {
  asBuffer,
  decodeSections,
  encodeSection,
  errorReply,
  type JobReply,
  type JobRequest,
} from "./hde-jobs.js";

const port = parentPort;
if (!port) throw new Error("hde-worker.js runs only as a worker thread");
const zstd = new LevelCompressors();
const dec = new BoundedDecompressor();

/** A copy in a buffer of its own when `u` shares its ArrayBuffer (so it can be transferred alone). */
function owned(u: Buffer): Uint8Array {
  if (u.byteOffset === 0 && u.byteLength === u.buffer.byteLength) return u;
  const c = new Uint8Array(new ArrayBuffer(u.byteLength));
  c.set(u);
  return c;
}

port.on("message", (req: JobRequest) => {
  let reply: JobReply;
  const transfer: ArrayBuffer[] = [];
  try {
    if (req.op === "encode") {
      const r = encodeSection(zstd, req.level, asBuffer(req.raw));
      // zstd's output is a buffer of its own; the raw fallback is the input handed back.
      const body = r.body.buffer === req.raw.buffer ? req.raw : owned(r.body);
      transfer.push(body.buffer as ArrayBuffer);
      reply = { id: req.id, ok: true, op: "encode", codec: r.codec, body, ns: r.ns };
    } else {
      const r = decodeSections(dec, asBuffer(req.msg), req.maxRawA);
      // Section B (and a raw section A) are views of the message: send it back whole.
      const a: Uint8Array = r.a.buffer === req.msg.buffer ? r.a : owned(r.a);
      for (const buf of new Set([req.msg.buffer, a.buffer, r.hashes.buffer]))
        transfer.push(buf as ArrayBuffer);
      reply = { id: req.id, ok: true, op: "decode", a, b: r.b, hashes: r.hashes };
    }
  } catch (err) {
    reply = errorReply(req.id, err);
  }
  port.postMessage(reply, transfer);
});
