import { describe, expect, it } from "vitest";
import { qemuLine } from "./hosts.js";

describe("host show's QEMU line", () => {
  it("gives the version, QEMU's own text, the binary and the range of q35 types", () => {
    expect(
      qemuLine({
        qemu: {
          binary: "/usr/bin/qemu-system-x86_64",
          version: "10.0.2",
          major: 10,
          minor: 0,
          micro: 2,
          text: "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
          machineTypes: ["pc-q35-10.0", "pc-q35-9.2", "pc-q35-7.2", "pc-q35-2.4"],
          q35Alias: "pc-q35-10.0",
        },
      }),
    ).toBe(
      "10.0.2 (QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)) at /usr/bin/qemu-system-x86_64; machine types pc-q35-2.4 … pc-q35-10.0, q35 = pc-q35-10.0",
    );
  });

  it("says when an agent did not report it", () => {
    expect(qemuLine({ qemu: null })).toMatch(/^not reported/);
  });
});
