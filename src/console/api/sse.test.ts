import { describe, expect, it } from "vitest";
import { SseOverflow, SseParser } from "./sse.js";

describe("the console's SSE parser", () => {
  it("yields messages split anywhere across chunks, with their id and type", () => {
    const p = new SseParser();
    const text =
      ': connected\n\nid: 7\nevent: vm.state\ndata: {"a":1}\n\nevent: migration.progress\ndata: x\r\ndata: y\r\n\r\n';
    const got = [];
    for (const ch of text) got.push(...p.push(ch));
    expect(got).toEqual([
      { id: "7", event: "vm.state", data: '{"a":1}' },
      { id: "7", event: "migration.progress", data: "x\ny" },
    ]);
  });

  it("refuses a message that grows past its bound", () => {
    const p = new SseParser(100);
    expect(() => p.push(`data: ${"x".repeat(200)}`)).toThrow(SseOverflow);
    const q = new SseParser(100);
    expect(() => {
      for (let i = 0; i < 20; i++) q.push(`data: ${"y".repeat(10)}\n`);
    }).toThrow(SseOverflow);
  });
});
