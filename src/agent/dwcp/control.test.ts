/**
 * The DWCP control messages: byte-for-byte the JSON the agents exchanged before the
 * schemas, and every kind of malformed or oversized message refused with
 * NOVA_DWCP_PROTOCOL.
 */
import { describe, expect, it } from "vitest";
import { isNovaError, type NovaError } from "../../lib/errors.js";
import {
  decodeHelloAnswer,
  decodeHelloRequest,
  encodeHelloAnswer,
  encodeHelloRequest,
  MAX_CONTROL_MESSAGE_BYTES,
} from "./control.js";

function refusal(f: () => unknown): NovaError {
  try {
    f();
  } catch (err) {
    if (isNovaError(err, "NOVA_DWCP_PROTOCOL")) return err;
    throw err;
  }
  throw new Error("expected NOVA_DWCP_PROTOCOL");
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe("hello request", () => {
  it("encodes the same bytes as before and decodes them back", () => {
    const req = { migrationId: "m1", token: "tok_-x" };
    const bytes = encodeHelloRequest(req);
    expect(bytes.toString("utf8")).toBe('{"migrationId":"m1","token":"tok_-x"}');
    expect(decodeHelloRequest(bytes)).toEqual(req);
  });

  it("keeps the wire field order whatever the caller's object order", () => {
    expect(encodeHelloRequest({ token: "t", migrationId: "m" }).toString("utf8")).toBe(
      '{"migrationId":"m","token":"t"}',
    );
  });

  it("tolerates extra fields from a newer peer", () => {
    expect(decodeHelloRequest(json({ migrationId: "m", token: "t", extra: 1 }))).toMatchObject({
      migrationId: "m",
      token: "t",
    });
  });

  it.each([
    ["not JSON", Buffer.from("{migrationId"), /not JSON/],
    ["an array", json(["m", "t"]), /hello: \(top level\)/],
    ["no token", json({ migrationId: "m" }), /\/token/],
    ["no migration id", json({ token: "t" }), /\/migrationId/],
    ["an empty migration id", json({ migrationId: "", token: "t" }), /\/migrationId/],
    ["a numeric migration id", json({ migrationId: 5, token: "t" }), /\/migrationId/],
    ["JSON null", Buffer.from("null"), /hello/],
  ])("refuses %s", (_what, bytes, message) => {
    const err = refusal(() => decodeHelloRequest(bytes));
    expect(err.message).toMatch(message);
    expect(err.details).toMatchObject({ message: "hello" });
  });

  it("refuses a channel that ended without a message", () => {
    expect(refusal(() => decodeHelloRequest(null)).message).toMatch(/ended the channel/);
  });

  it("refuses an oversized message before parsing it", () => {
    const big = json({ migrationId: "m", token: "t".repeat(MAX_CONTROL_MESSAGE_BYTES) });
    expect(refusal(() => decodeHelloRequest(big)).message).toMatch(/more than 4096/);
    const longId = json({ migrationId: "m".repeat(257), token: "t" });
    expect(refusal(() => decodeHelloRequest(longId)).message).toMatch(/\/migrationId/);
  });
});

describe("hello answer", () => {
  it("encodes acceptance and refusal as before and decodes them back", () => {
    expect(encodeHelloAnswer({ ok: true }).toString("utf8")).toBe('{"ok":true}');
    const no = encodeHelloAnswer({ ok: false, error: "unknown migration or bad token" });
    expect(no.toString("utf8")).toBe('{"ok":false,"error":"unknown migration or bad token"}');
    expect(decodeHelloAnswer(no)).toEqual({ ok: false, error: "unknown migration or bad token" });
    expect(decodeHelloAnswer(Buffer.from('{"ok":true}'))).toEqual({ ok: true });
  });

  it.each([
    ["not JSON", Buffer.from("yes")],
    ["no ok", json({ error: "x" })],
    ["a non-boolean ok", json({ ok: "true" })],
    ["a non-string error", json({ ok: false, error: 7 })],
    ["nothing", null],
    ["an oversized message", json({ ok: false, error: "e".repeat(MAX_CONTROL_MESSAGE_BYTES) })],
  ])("refuses %s", (_what, bytes) => {
    expect(refusal(() => decodeHelloAnswer(bytes)).details).toMatchObject({ message: "hello answer" });
  });
});
