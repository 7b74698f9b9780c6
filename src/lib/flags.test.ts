import { describe, expect, it } from "vitest";
import { parseListen, parsePort, parsePositiveInt } from "./flags.js";

describe("flag parsing", () => {
  it("parses listen addresses and rejects bad ones", () => {
    expect(parseListen("0.0.0.0:80")).toEqual({ host: "0.0.0.0", port: 80 });
    expect(parseListen("7700")).toEqual({ host: "127.0.0.1", port: 7700 });
    expect(() => parseListen("host:99999")).toThrow(/Invalid listen address/);
    expect(() => parseListen("nope")).toThrow(/expected HOST:PORT/);
  });

  it("names the flag and the value it refuses", () => {
    expect(parsePositiveInt("3", "--vcpus")).toBe(3);
    expect(() => parsePositiveInt("0", "--vcpus")).toThrow("--vcpus must be a positive whole number, got 0");
    expect(() => parsePositiveInt("1.5", "--memory")).toThrow(/--memory/);
    expect(parsePort("0", "--dwcp-port")).toBe(0);
    expect(() => parsePort("65536", "--dwcp-port")).toThrow(
      '--dwcp-port must be a port from 0 to 65535, got "65536"',
    );
  });
});
