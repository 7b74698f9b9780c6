/**
 * NBD records built to the protocol for the relay's unit tests: the server's greeting and
 * option replies, requests and the three reply forms (docs/migration-stream.md, "NBD").
 */
export const Opt = { GO: 7, STRUCTURED_REPLY: 8, EXTENDED_HEADERS: 11 } as const;

export const greeting = (): Buffer => Buffer.from("NBDMAGICIHAVEOPT\u0000\u0003", "latin1");

export function optionReply(option: number, type: number, data = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(0x3e889045565a9n, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}

export function option(code: number, data = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.write("IHAVEOPT", 0, "latin1");
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

export function request(
  type: number,
  cookie: bigint,
  o: { offset?: number; length?: number; payload?: Buffer; extended?: boolean } = {},
): Buffer {
  const h = Buffer.alloc(o.extended ? 32 : 28);
  h.writeUInt32BE(o.extended ? 0x21e41c71 : 0x25609513, 0);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(BigInt(o.offset ?? 0), 16);
  const length = o.length ?? o.payload?.length ?? 0;
  if (o.extended) h.writeBigUInt64BE(BigInt(length), 24);
  else h.writeUInt32BE(length, 24);
  return o.payload ? Buffer.concat([h, o.payload]) : h;
}

export function simpleReply(cookie: bigint, error = 0, data = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(0x67446698, 0);
  h.writeUInt32BE(error, 4);
  h.writeBigUInt64BE(cookie, 8);
  return Buffer.concat([h, data]);
}

/** A structured (or, with `extended`, extended) reply chunk. */
export function chunkReply(
  cookie: bigint,
  o: { type?: number; done?: boolean; payload?: Buffer; extended?: boolean; offset?: number } = {},
): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const h = Buffer.alloc(o.extended ? 32 : 20);
  h.writeUInt32BE(o.extended ? 0x6e8a278c : 0x668e33ef, 0);
  h.writeUInt16BE(o.done === false ? 0 : 1, 4);
  h.writeUInt16BE(o.type ?? 0, 6);
  h.writeBigUInt64BE(cookie, 8);
  if (o.extended) {
    h.writeBigUInt64BE(BigInt(o.offset ?? 0), 16);
    h.writeBigUInt64BE(BigInt(payload.length), 24);
  } else h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

/** NBD_REPLY_TYPE_ERROR's payload: error number, empty message. */
export function errorPayload(code: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt32BE(code, 0);
  return b;
}

/** Cuts `data` at the given offsets. */
export function cut(data: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of [...at].sort((x, y) => x - y)) {
    out.push(data.subarray(prev, a));
    prev = a;
  }
  out.push(data.subarray(prev));
  return out;
}
