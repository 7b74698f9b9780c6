import { describe, expect, it } from "vitest";
import { parseFailpoints } from "./failpoints.js";

describe("failpoints", () => {
  it("are off unless named", () => {
    expect(parseFailpoints(undefined).size).toBe(0);
    expect(parseFailpoints("").size).toBe(0);
  });

  it("parse a list of NAME=kill|stop", () => {
    expect([...parseFailpoints("acp.source.released=kill, acp.destination.resuming=stop")]).toEqual([
      ["acp.source.released", "kill"],
      ["acp.destination.resuming", "stop"],
    ]);
  });

  it("refuse a malformed entry rather than silently test nothing", () => {
    expect(() => parseFailpoints("acp.source.released")).toThrow(/is not NAME=kill\|stop/);
    expect(() => parseFailpoints("acp.source.released=pause")).toThrow(/is not NAME=kill\|stop/);
    expect(() => parseFailpoints("Bad Name=kill")).toThrow(/is not NAME=kill\|stop/);
  });
});
