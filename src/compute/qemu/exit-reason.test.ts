import { describe, expect, it } from "vitest";
import { describeExit, logTailLines } from "./exit-reason.js";

describe("describeExit", () => {
  it("reports a guest power-off as expected", () => {
    expect(
      describeExit({ pid: 10, child: true, code: 0, signal: null, shutdownReason: "guest-shutdown" }),
    ).toEqual({
      reason: "guest powered off (guest-shutdown)",
      expected: true,
      shutdownReason: "guest-shutdown",
      code: 0,
      signal: null,
    });
  });

  it("reports our quit as expected and someone else's as unexpected", () => {
    expect(
      describeExit({ pid: 10, child: false, shutdownReason: "host-qmp-quit", requested: "stop" }),
    ).toMatchObject({
      reason: "QEMU quit on request (host-qmp-quit)",
      expected: true,
    });
    expect(describeExit({ pid: 10, child: false, shutdownReason: "host-qmp-quit" }).expected).toBe(false);
  });

  it("quotes QEMU's own log line for a signal nobody here sent", () => {
    const exit = describeExit({
      pid: 10,
      child: true,
      code: 0,
      shutdownReason: "host-signal",
      lastLogLine: "qemu-system-x86_64: terminating on signal 15 from pid 4242 (bash)",
    });
    expect(exit.expected).toBe(false);
    expect(exit.reason).toBe(
      "QEMU was terminated by a signal (host-signal): qemu-system-x86_64: terminating on signal 15 from pid 4242 (bash)",
    );
  });

  it("names the signal that killed a child, expected only when we sent it", () => {
    expect(describeExit({ pid: 10, child: true, code: null, signal: "SIGKILL" })).toMatchObject({
      reason: "QEMU was killed by SIGKILL",
      expected: false,
      signal: "SIGKILL",
    });
    expect(describeExit({ pid: 10, child: true, signal: "SIGKILL", requested: "kill" }).expected).toBe(true);
  });

  it("quotes the last qemu.log line when QEMU exits with an error code", () => {
    expect(
      describeExit({ pid: 10, child: true, code: 1, signal: null, lastLogLine: "qemu: could not open disk" }),
    ).toMatchObject({
      reason: "QEMU exited with code 1: qemu: could not open disk",
      expected: false,
      code: 1,
    });
  });

  it("says an adopted process exited unexpectedly, since its signal cannot be known", () => {
    const exit = describeExit({ pid: 4321, child: false });
    expect(exit).toEqual({ reason: "QEMU process 4321 exited unexpectedly", expected: false });
    expect(describeExit({ pid: 4321, child: false, requested: "kill" }).expected).toBe(true);
  });

  it("treats a guest panic as unexpected", () => {
    expect(describeExit({ pid: 1, child: false, shutdownReason: "guest-panic" }).expected).toBe(false);
  });
});

describe("logTailLines", () => {
  it("keeps the last non-empty lines without QEMU's timestamp prefix", () => {
    const log = "2024-11-22T21:00:00.123456Z qemu: warning: a\n\n2024-11-22T21:00:01.000001Z qemu: b\r\nc\n";
    expect(logTailLines(log, 2)).toEqual(["qemu: b", "c"]);
  });
});
