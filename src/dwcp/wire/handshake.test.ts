import { describe, expect, it } from "vitest";
import {
  chooseVersion,
  decodeHello,
  decodeReply,
  encodeHello,
  encodeReply,
  versionMask,
  versionsOf,
} from "./handshake.js";

describe("handshake messages", () => {
  it("round-trip HELLO and REPLY", () => {
    const hello = {
      versions: versionMask([1, 3]),
      join: true,
      capabilities: 0xf,
      sessionId: Buffer.alloc(16, 7),
      windowBytes: 1 << 25,
      maxPayload: 1 << 18,
      publicKey: Buffer.alloc(32, 9),
    };
    expect(decodeHello(encodeHello(hello))).toEqual(hello);
    const reply = {
      accepted: false,
      version: 0,
      reason: 1,
      listenerVersions: versionMask([3]),
      capabilities: 0,
      sessionId: Buffer.alloc(16, 1),
      windowBytes: 0,
      maxPayload: 0,
      publicKey: Buffer.alloc(32),
    };
    expect(decodeReply(encodeReply(reply))).toEqual(reply);
  });

  it("picks the highest common version this implementation speaks", () => {
    expect(chooseVersion(versionMask([1, 3]), versionMask([1, 3]))).toBe(3);
    expect(chooseVersion(versionMask([1]), versionMask([1, 3]))).toBe(1);
    expect(chooseVersion(versionMask([2]), versionMask([1, 2, 3]))).toBe(0);
    expect(versionsOf(versionMask([1, 3]))).toEqual([1, 3]);
  });

  it("rejects a message that is not DWCP or is corrupted", () => {
    expect(() => decodeHello(Buffer.alloc(76))).toThrow(/not a DWCP endpoint/);
    const b = encodeHello({
      versions: 5,
      join: false,
      capabilities: 0,
      sessionId: Buffer.alloc(16),
      windowBytes: 1,
      maxPayload: 1,
      publicKey: Buffer.alloc(32),
    });
    b.writeUInt8(b.readUInt8(30) ^ 1, 30);
    expect(() => decodeHello(b)).toThrow(/checksum/);
  });
});
