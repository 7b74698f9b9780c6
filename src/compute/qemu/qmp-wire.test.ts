import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { classifyQmpMessage, encodeQmpCommand, QmpDecoder } from "./qmp-wire.js";

const greeting =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}\r\n';

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

describe("QmpDecoder", () => {
  it("decodes the greeting", () => {
    const [msg] = new QmpDecoder().push(greeting);
    expect(msg).toEqual({
      kind: "greeting",
      greeting: {
        version: { qemu: { micro: 22, minor: 2, major: 7 }, package: "Debian" },
        capabilities: ["oob"],
      },
    });
  });

  it("reassembles a message split across chunks, including inside a UTF-8 character", () => {
    const decoder = new QmpDecoder();
    const line = Buffer.from('{"return": {"name": "vm-ü"}, "id": 3}\r\n', "utf8");
    const cut = line.indexOf(0xc3) + 1; // between the two bytes of "ü"
    expect(decoder.push(line.subarray(0, 5))).toEqual([]);
    expect(decoder.push(line.subarray(5, cut))).toEqual([]);
    expect(decoder.push(line.subarray(cut))).toEqual([{ kind: "return", id: 3, value: { name: "vm-ü" } }]);
  });

  it("returns every message of a chunk holding several, in order, and keeps the remainder", () => {
    const decoder = new QmpDecoder();
    const chunk =
      '{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n' +
      '{"return": {}, "id": 1}\r\n' +
      '{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 2}\r\n' +
      '{"return"';
    expect(decoder.push(chunk)).toEqual([
      { kind: "event", event: { event: "STOP", timestamp: { seconds: 1, microseconds: 2 } } },
      { kind: "return", id: 1, value: {} },
      { kind: "error", id: 2, qmpClass: "CommandNotFound", desc: "nope" },
    ]);
    expect(decoder.pending).toBe('{"return"');
    expect(decoder.push(': 5, "id": 4}\n')).toEqual([{ kind: "return", id: 4, value: 5 }]);
  });

  it("keeps event data and ignores blank lines", () => {
    const msgs = new QmpDecoder().push(
      '\r\n{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}\n',
    );
    expect(msgs).toEqual([
      { kind: "event", event: { event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" } } },
    ]);
  });

  it("rejects malformed JSON with NOVA_QMP_PROTOCOL quoting the line", () => {
    const err = thrownBy(() => new QmpDecoder().push("this is not json\n"));
    expect(isNovaError(err, "NOVA_QMP_PROTOCOL")).toBe(true);
    expect((err as Error).message).toContain("this is not json");
  });

  it("rejects JSON that is not a QMP message", () => {
    expect(
      isNovaError(
        thrownBy(() => new QmpDecoder().push("[1,2]\n")),
        "NOVA_QMP_PROTOCOL",
      ),
    ).toBe(true);
    expect(
      isNovaError(
        thrownBy(() => new QmpDecoder().push('{"hello": 1}\n')),
        "NOVA_QMP_PROTOCOL",
      ),
    ).toBe(true);
    expect(
      isNovaError(
        thrownBy(() => new QmpDecoder().push('{"QMP": {}}\n')),
        "NOVA_QMP_PROTOCOL",
      ),
    ).toBe(true);
  });

  it("refuses to buffer an endless line", () => {
    const decoder = new QmpDecoder();
    const big = "x".repeat(1024 * 1024);
    const err = thrownBy(() => {
      for (let i = 0; i < 17; i++) decoder.push(big);
    });
    expect(isNovaError(err, "NOVA_QMP_PROTOCOL")).toBe(true);
  });
});

describe("classifyQmpMessage", () => {
  it("defaults an error without class to GenericError and keeps a missing id undefined", () => {
    expect(classifyQmpMessage({ error: { desc: "JSON parse error" } })).toEqual({
      kind: "error",
      id: undefined,
      qmpClass: "GenericError",
      desc: "JSON parse error",
    });
  });
});

describe("encodeQmpCommand", () => {
  it("encodes an id-tagged command as one line, with arguments only when given", () => {
    expect(encodeQmpCommand("query-status", undefined, 7)).toBe('{"execute":"query-status","id":7}\n');
    expect(encodeQmpCommand("stop", { a: "x\ny" }, 8)).toBe(
      '{"execute":"stop","arguments":{"a":"x\\ny"},"id":8}\n',
    );
  });
});
