import { describe, expect, it } from "vitest";
import { QEMU_10_0_2 } from "../../lib/qemu-info.test-util.js";
import { drainText, qemuLine } from "./hosts.js";

describe("host show's QEMU line", () => {
  it("gives the version, QEMU's own text, the binary and the range of q35 types", () => {
    expect(
      qemuLine({
        qemu: QEMU_10_0_2,
      }),
    ).toBe(
      "10.0.2 (QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)) at /usr/bin/qemu-system-x86_64; machine types pc-q35-2.4 … pc-q35-10.0, q35 = pc-q35-10.0",
    );
  });

  it("says when an agent did not report it", () => {
    expect(qemuLine({ qemu: null })).toMatch(/^not reported/);
  });
});

describe("the host's drain column", () => {
  const id = "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01";
  it("says draining, cancelling, how the last drain ended, or - when never drained", () => {
    expect(drainText({ drain: null })).toBe("-");
    expect(drainText({ drain: { id, state: "draining", cancelRequested: false } })).toBe("draining");
    expect(drainText({ drain: { id, state: "draining", cancelRequested: true } })).toBe(
      "draining (cancelling)",
    );
    expect(drainText({ drain: { id, state: "incomplete", cancelRequested: false } })).toBe("last incomplete");
  });
});
