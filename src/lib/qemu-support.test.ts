import { describe, expect, it } from "vitest";
import { isNovaError } from "./errors.js";
import { QEMU_7_2_22, QEMU_10_0_2 } from "./qemu-info.test-util.js";
import {
  isSupportedQemu,
  isValidMachineType,
  MACHINE_TYPE_PATTERN,
  machineTypeSupport,
  q35TypeVersion,
  qemuUnsupportedError,
  sortQ35Types,
  validateMachineType,
} from "./qemu-support.js";

describe("supported QEMU versions", () => {
  it("are 7.2 and newer", () => {
    expect(isSupportedQemu({ major: 7, minor: 2 })).toBe(true);
    expect(isSupportedQemu({ major: 10, minor: 0 })).toBe(true);
    expect(isSupportedQemu({ major: 8, minor: 0 })).toBe(true);
    expect(isSupportedQemu({ major: 7, minor: 1 })).toBe(false);
    expect(isSupportedQemu({ major: 6, minor: 2 })).toBe(false);
  });

  it("refusals name what was found and how to install a supported QEMU", () => {
    const err = qemuUnsupportedError("QEMU 6.2.0 at /usr/bin/qemu-system-x86_64 is too old", {
      found: "6.2.0",
    });
    expect(err.code).toBe("NOVA_QEMU_UNSUPPORTED");
    expect(err.status).toBe(422);
    expect(err.message).toContain("QEMU 6.2.0 at /usr/bin/qemu-system-x86_64 is too old");
    expect(err.message).toContain("needs QEMU 7.2 or newer");
    expect(err.message).toContain("bookworm-backports");
    expect(err.message).toContain("Debian 13, apt install qemu-system-x86");
    expect(err.message).toContain("--qemu-binary");
    expect(err.details).toMatchObject({ minimum: "7.2", found: "6.2.0" });
  });
});

describe("machine type names", () => {
  it("accept q35 and pc-q35-X.Y only", () => {
    for (const ok of ["q35", "pc-q35-7.2", "pc-q35-10.0", "pc-q35-2.12"])
      expect(isValidMachineType(ok)).toBe(true);
    for (const bad of [
      "q35,accel=kvm",
      "pc-q35-7.2,smm=off",
      "pc-q35-4.0.1",
      "pc-i440fx-7.2",
      "pc",
      "Q35",
      "pc-q35-7.2\n",
      " pc-q35-7.2",
      "pc-q35-7",
      "pc-q35-1234.0",
      "-machine",
      "help",
      "",
    ])
      expect(isValidMachineType(bad), bad).toBe(false);
  });

  it("fail validation with NOVA_BAD_REQUEST saying what is accepted", () => {
    expect(() => validateMachineType("pc-q35-7.2")).not.toThrow();
    try {
      validateMachineType("q35,accel=kvm", "--machine-type");
      expect.unreachable();
    } catch (err) {
      if (!isNovaError(err, "NOVA_BAD_REQUEST")) throw err;
      expect(err.message).toMatch(
        /Invalid machine type "q35,accel=kvm": use a versioned q35 type such as pc-q35-7.2/,
      );
      expect(err.details).toEqual({ field: "--machine-type", value: "q35,accel=kvm" });
    }
  });

  it("the API schemas use the same pattern", () => {
    expect(MACHINE_TYPE_PATTERN).toBe("^(q35|pc-q35-[0-9]{1,3}\\.[0-9]{1,3})$");
  });

  it("sort newest first and know their version", () => {
    expect(
      sortQ35Types(["pc-q35-2.10", "pc-q35-10.0", "pc-q35-4.0.1", "pc-q35-4.0", "pc-q35-2.9", "pc-q35-7.2"]),
    ).toEqual(["pc-q35-10.0", "pc-q35-7.2", "pc-q35-4.0.1", "pc-q35-4.0", "pc-q35-2.10", "pc-q35-2.9"]);
    expect(q35TypeVersion("pc-q35-10.0")).toEqual({ major: 10, minor: 0 });
    expect(q35TypeVersion("q35")).toBeUndefined();
  });
});

describe("can machine type M run on QEMU V with machine list L", () => {
  it("runs a type the QEMU lists", () => {
    expect(machineTypeSupport("pc-q35-7.2", QEMU_10_0_2)).toEqual({ ok: true, resolved: "pc-q35-7.2" });
    expect(machineTypeSupport("pc-q35-7.2", QEMU_7_2_22)).toEqual({ ok: true, resolved: "pc-q35-7.2" });
    expect(machineTypeSupport("pc-q35-10.0", QEMU_10_0_2)).toEqual({ ok: true, resolved: "pc-q35-10.0" });
  });

  it("resolves q35 to the host's newest", () => {
    expect(machineTypeSupport("q35", QEMU_10_0_2)).toEqual({ ok: true, resolved: "pc-q35-10.0" });
    expect(machineTypeSupport("q35", QEMU_7_2_22)).toEqual({ ok: true, resolved: "pc-q35-7.2" });
  });

  it("refuses a type newer than the QEMU, saying which QEMU it needs", () => {
    expect(machineTypeSupport("pc-q35-10.0", QEMU_7_2_22)).toEqual({
      ok: false,
      reason:
        "QEMU 7.2.22 has no machine type pc-q35-10.0 (its newest is pc-q35-7.2; pc-q35-10.0 needs QEMU 10.0 or newer)",
    });
    expect(machineTypeSupport("pc-q35-8.0", QEMU_7_2_22).ok).toBe(false);
  });

  it("refuses an old type a newer QEMU dropped", () => {
    expect(machineTypeSupport("pc-q35-2.3", QEMU_10_0_2)).toEqual({
      ok: false,
      reason: "QEMU 10.0.2 no longer offers machine type pc-q35-2.3",
    });
  });

  it("decides by version alone when the QEMU's list is unknown", () => {
    const bare = { ...QEMU_7_2_22, machineTypes: [] };
    expect(machineTypeSupport("pc-q35-7.2", bare).ok).toBe(true);
    expect(machineTypeSupport("pc-q35-7.0", bare).ok).toBe(true);
    expect(machineTypeSupport("pc-q35-10.0", bare)).toEqual({
      ok: false,
      reason: "QEMU 7.2.22 has no machine type pc-q35-10.0 (it needs QEMU 10.0 or newer)",
    });
  });

  it("refuses anything that is not a q35 type", () => {
    expect(machineTypeSupport("pc-i440fx-7.2", QEMU_10_0_2).ok).toBe(false);
  });
});
