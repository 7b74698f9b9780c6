/**
 * The QEMUs the unit and store tests speak of, as an agent's probe reports them (QemuInfo;
 * each also serves where a QemuMachineFacts is wanted). 10.0.2 and 7.2.22 are the two on
 * this machine: their text and q35 types are what src/compute/qemu/testdata captured
 * (qemu-version.test.ts checks the version lines and 10.0.2's newest types against these).
 * 6.2.0 is one too old to accept. Not part of the build (*.test-util.ts is excluded from tsconfig.json).
 */
import type { QemuInfo } from "../api/types/agent.js";

/** Debian 12's bookworm-backports QEMU: q35 is pc-q35-10.0, the oldest q35 type pc-q35-2.4. */
export const QEMU_10_0_2: QemuInfo = {
  binary: "/usr/bin/qemu-system-x86_64",
  version: "10.0.2",
  major: 10,
  minor: 0,
  micro: 2,
  text: "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
  machineTypes: [
    "pc-q35-10.0",
    "pc-q35-9.2",
    "pc-q35-9.1",
    "pc-q35-9.0",
    "pc-q35-8.2",
    "pc-q35-8.1",
    "pc-q35-8.0",
    "pc-q35-7.2",
    "pc-q35-7.1",
    "pc-q35-7.0",
    "pc-q35-6.2",
    "pc-q35-6.1",
    "pc-q35-6.0",
    "pc-q35-5.2",
    "pc-q35-5.1",
    "pc-q35-5.0",
    "pc-q35-4.2",
    "pc-q35-4.1",
    "pc-q35-4.0.1",
    "pc-q35-4.0",
    "pc-q35-3.1",
    "pc-q35-3.0",
    "pc-q35-2.12",
    "pc-q35-2.11",
    "pc-q35-2.10",
    "pc-q35-2.9",
    "pc-q35-2.8",
    "pc-q35-2.7",
    "pc-q35-2.6",
    "pc-q35-2.5",
    "pc-q35-2.4",
  ],
  q35Alias: "pc-q35-10.0",
};

/**
 * Debian 12's own QEMU, the oldest supported, installed at a path of its own (as beside a
 * system QEMU 10): q35 is pc-q35-7.2, and its q35 types are QEMU 10.0.2's from pc-q35-7.2 down.
 */
export const QEMU_7_2_22: QemuInfo = {
  binary: "/opt/qemu-7.2/qemu-system-x86_64",
  version: "7.2.22",
  major: 7,
  minor: 2,
  micro: 22,
  text: "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)",
  machineTypes: QEMU_10_0_2.machineTypes.slice(QEMU_10_0_2.machineTypes.indexOf("pc-q35-7.2")),
  q35Alias: "pc-q35-7.2",
};

/** Ubuntu 22.04's QEMU, older than 7.2 and so refused (its q35 types were never captured: one stands for them). */
export const QEMU_6_2_0: QemuInfo = {
  binary: "/usr/bin/qemu-system-x86_64",
  version: "6.2.0",
  major: 6,
  minor: 2,
  micro: 0,
  text: "QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)",
  machineTypes: ["pc-q35-6.2"],
  q35Alias: "pc-q35-6.2",
};
