import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import {
  type AccelFacts,
  accelForceFromEnv,
  decideAccelerator,
  needsKvmProbe,
  PROBE_MARKER,
  probeBootSector,
} from "./accel.js";

const auto: AccelFacts = {
  force: "auto",
  forceSource: "default",
  kvmDevicePath: "/dev/kvm",
  kvmDevice: { state: "ok" },
  timeoutMs: 3_000,
};

describe("decideAccelerator", () => {
  it("chooses KVM when the test guest printed its marker", () => {
    const probe = { markerSeen: true, elapsedMs: 420, logTail: [] };
    expect(decideAccelerator({ ...auto, probe })).toEqual({
      accel: "kvm",
      reason: "a KVM test guest booted in 420 ms",
      probe,
    });
  });

  it("chooses KVM when its test guest is about as fast as under TCG", () => {
    const probe = { markerSeen: true, elapsedMs: 300, logTail: [] };
    const tcgProbe = { markerSeen: true, elapsedMs: 110, logTail: [] };
    expect(decideAccelerator({ ...auto, probe, tcgProbe }).accel).toBe("kvm");
  });

  it("falls back to TCG when KVM boots the test guest far slower than TCG (nested, broken)", () => {
    const probe = { markerSeen: true, elapsedMs: 1459, logTail: [] };
    const tcgProbe = { markerSeen: true, elapsedMs: 85, logTail: [] };
    const d = decideAccelerator({ ...auto, probe, tcgProbe });
    expect(d.accel).toBe("tcg");
    expect(d.reason).toBe(
      "/dev/kvm present but a KVM test guest took 1459 ms, against 85 ms under TCG (KVM is emulated or broken here; Linux guests hang)",
    );
  });

  it("falls back to TCG when the test guest made no progress in time", () => {
    const d = decideAccelerator({ ...auto, probe: { markerSeen: false, elapsedMs: 3_010, logTail: [] } });
    expect(d.accel).toBe("tcg");
    expect(d.reason).toBe("/dev/kvm present but a test guest made no progress in 3 s");
  });

  it("falls back to TCG quoting QEMU when the KVM test guest crashed", () => {
    const d = decideAccelerator({
      ...auto,
      probe: {
        markerSeen: false,
        elapsedMs: 50,
        exited: { code: null, signal: "SIGABRT" },
        logTail: ["qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"],
      },
    });
    expect(d).toMatchObject({
      accel: "tcg",
      reason:
        "/dev/kvm present but a KVM test guest failed: QEMU was killed by SIGABRT: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69",
    });
  });

  it("uses TCG without probing when /dev/kvm is missing or cannot be opened", () => {
    expect(needsKvmProbe("auto", { state: "missing" })).toBe(false);
    expect(needsKvmProbe("auto", { state: "unusable", error: "EACCES" })).toBe(false);
    expect(needsKvmProbe("auto", { state: "ok" })).toBe(true);
    expect(decideAccelerator({ ...auto, kvmDevice: { state: "missing" } })).toEqual({
      accel: "tcg",
      reason: "/dev/kvm does not exist",
    });
    expect(decideAccelerator({ ...auto, kvmDevice: { state: "unusable", error: "EACCES" } })).toEqual({
      accel: "tcg",
      reason: "/dev/kvm exists but cannot be opened (EACCES)",
    });
  });

  it("honours a forced accelerator without probing, saying where the force came from", () => {
    expect(needsKvmProbe("kvm", { state: "ok" })).toBe(false);
    expect(needsKvmProbe("tcg", { state: "ok" })).toBe(false);
    expect(decideAccelerator({ ...auto, force: "tcg", forceSource: "NOVACRON_ACCEL" })).toEqual({
      accel: "tcg",
      reason: "TCG forced by NOVACRON_ACCEL=tcg",
    });
    expect(decideAccelerator({ ...auto, force: "kvm", forceSource: "option" })).toEqual({
      accel: "kvm",
      reason: "KVM forced by configuration",
    });
  });

  it("refuses forced KVM on a host without a usable /dev/kvm", () => {
    let err: unknown;
    try {
      decideAccelerator({
        ...auto,
        force: "kvm",
        forceSource: "NOVACRON_ACCEL",
        kvmDevice: { state: "missing" },
      });
    } catch (e) {
      err = e;
    }
    expect(isNovaError(err, "NOVA_CONFIG")).toBe(true);
  });
});

describe("accelForceFromEnv", () => {
  it("reads kvm, tcg and auto, ignores unset and rejects anything else", () => {
    expect(accelForceFromEnv({ NOVACRON_ACCEL: "kvm" })).toBe("kvm");
    expect(accelForceFromEnv({ NOVACRON_ACCEL: " tcg " })).toBe("tcg");
    expect(accelForceFromEnv({ NOVACRON_ACCEL: "auto" })).toBe("auto");
    expect(accelForceFromEnv({})).toBeUndefined();
    expect(() => accelForceFromEnv({ NOVACRON_ACCEL: "hvf" })).toThrow(/NOVACRON_ACCEL/);
  });
});

describe("probeBootSector", () => {
  it("is a 512-byte MBR that writes the marker to port 0xe9 and then halts", () => {
    const sector = probeBootSector();
    expect(sector.length).toBe(512);
    expect(sector.subarray(510)).toEqual(Buffer.from([0x55, 0xaa]));
    // Decode the mov al/out pairs back into the string they print.
    let printed = "";
    let at = 0;
    while (sector[at] === 0xb0) {
      expect(sector.subarray(at + 2, at + 4)).toEqual(Buffer.from([0xe6, 0xe9]));
      printed += String.fromCharCode(sector[at + 1]!);
      at += 4;
    }
    expect(printed).toBe(`${PROBE_MARKER}\n`);
    expect(sector.subarray(at, at + 4)).toEqual(Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]));
  });
});
