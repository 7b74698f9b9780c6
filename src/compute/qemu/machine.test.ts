import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { buildQemuArgv, escapeQemuOptValue, type MachineConfig, vmRunPaths } from "./machine.js";

const base: MachineConfig = {
  vmId: "0b9c8a4e-6f3d-4c1e-9a57-2d1f0e3c4b5a",
  name: "web-1",
  vcpus: 2,
  memoryMiB: 512,
  accel: "tcg",
  diskPath: "/var/lib/novacron/disks/web-1.qcow2",
  runDir: "/run/novacron/vms/0b9c8a4e",
};

/** The value following `flag` (first occurrence). */
function arg(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i === -1 ? undefined : argv[i + 1];
}

/** Every value following `flag`. */
function args(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag && argv[i + 1] !== undefined ? [argv[i + 1]!] : []));
}

function expectUnprocessable(cfg: MachineConfig, field: string): void {
  try {
    buildQemuArgv(cfg);
  } catch (err) {
    expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
    expect((err as { details: { field: string } }).details.field).toBe(field);
    return;
  }
  throw new Error(`expected ${field} to be rejected`);
}

describe("vmRunPaths", () => {
  it("places QMP socket, pidfile, serial log and QEMU log in the run dir", () => {
    expect(vmRunPaths("/run/vm")).toEqual({
      qmpSocket: "/run/vm/qmp.sock",
      pidfile: "/run/vm/qemu.pid",
      serialLog: "/run/vm/serial.log",
      qemuLog: "/run/vm/qemu.log",
    });
  });
});

describe("buildQemuArgv", () => {
  it("identifies the process by name and UUID so /proc/<pid>/cmdline finds it", () => {
    const argv = buildQemuArgv(base);
    expect(arg(argv, "-name")).toBe("web-1,debug-threads=on");
    expect(arg(argv, "-uuid")).toBe(base.vmId);
  });

  it("builds a q35 TCG machine with -cpu max, sized as asked, with no default devices or display", () => {
    const argv = buildQemuArgv(base);
    expect(arg(argv, "-machine")).toBe("q35");
    expect(arg(argv, "-accel")).toBe("tcg");
    expect(arg(argv, "-cpu")).toBe("max");
    expect(arg(argv, "-smp")).toBe("2");
    expect(arg(argv, "-m")).toBe("size=512M");
    expect(argv).toContain("-nodefaults");
    expect(argv).toContain("-no-user-config");
    expect(arg(argv, "-display")).toBe("none");
    expect(argv).not.toContain("-netdev");
    expect(argv).not.toContain("-nic");
  });

  it("runs the VM's pinned machine type, q35 only when none is given", () => {
    expect(arg(buildQemuArgv({ ...base, machineType: "pc-q35-7.2" }), "-machine")).toBe("pc-q35-7.2");
    expect(arg(buildQemuArgv({ ...base, machineType: "pc-q35-10.0" }), "-machine")).toBe("pc-q35-10.0");
    expect(arg(buildQemuArgv({ ...base, machineType: "q35" }), "-machine")).toBe("q35");
  });

  it("rejects machine types that are not q35 or pc-q35-X.Y, options smuggled in included", () => {
    for (const machineType of [
      "q35,accel=kvm",
      "pc-q35-7.2,kernel-irqchip=off",
      "pc-i440fx-7.2",
      "pc",
      "microvm",
      "pc-q35-7",
      "pc-q35-7.2 ",
      "-machine",
      "help",
      "",
    ]) {
      expectUnprocessable({ ...base, machineType }, "machineType");
    }
  });

  it("passes the host CPU through under KVM", () => {
    const argv = buildQemuArgv({ ...base, accel: "kvm" });
    expect(arg(argv, "-accel")).toBe("kvm");
    expect(arg(argv, "-cpu")).toBe("host");
  });

  it("attaches the disk as virtio-blk-pci with cache=none, aio=threads and discard=unmap", () => {
    const argv = buildQemuArgv(base);
    expect(arg(argv, "-drive")).toBe(
      "file=/var/lib/novacron/disks/web-1.qcow2,format=qcow2,if=none,id=drive-vda,cache=none,aio=threads,discard=unmap",
    );
    expect(arg(argv, "-device")).toBe("virtio-blk-pci,drive=drive-vda,id=vda,bootindex=1");
  });

  it("sends the serial port to an appending file and serves QMP on a non-blocking unix socket", () => {
    const argv = buildQemuArgv(base);
    const chardevs = args(argv, "-chardev");
    expect(chardevs).toContain("file,id=serial0,path=/run/novacron/vms/0b9c8a4e/serial.log,append=on");
    expect(arg(argv, "-serial")).toBe("chardev:serial0");
    expect(chardevs).toContain("socket,id=qmp,path=/run/novacron/vms/0b9c8a4e/qmp.sock,server=on,wait=off");
    expect(arg(argv, "-mon")).toBe("chardev=qmp,mode=control");
    expect(arg(argv, "-pidfile")).toBe("/run/novacron/vms/0b9c8a4e/qemu.pid");
  });

  it("adds direct kernel boot options only when a kernel is given", () => {
    expect(buildQemuArgv(base)).not.toContain("-kernel");
    const argv = buildQemuArgv({
      ...base,
      kernelPath: "/images/vmlinuz",
      initrdPath: "/images/initrd.img",
      kernelCmdline: "console=ttyS0 root=/dev/vda rw",
    });
    expect(arg(argv, "-kernel")).toBe("/images/vmlinuz");
    expect(arg(argv, "-initrd")).toBe("/images/initrd.img");
    expect(arg(argv, "-append")).toBe("console=ttyS0 root=/dev/vda rw");
  });

  it("escapes commas in option values so a path cannot inject QEMU options", () => {
    const argv = buildQemuArgv({
      ...base,
      name: "a,b",
      diskPath: "/disks/x,readonly=on.qcow2",
      runDir: "/run/vm,1",
      kernelPath: "/k,1/vmlinuz",
    });
    expect(arg(argv, "-name")).toBe("a,,b,debug-threads=on");
    expect(arg(argv, "-drive")).toMatch(/^file=\/disks\/x,,readonly=on\.qcow2,format=qcow2,/);
    expect(args(argv, "-chardev")).toContain("socket,id=qmp,path=/run/vm,,1/qmp.sock,server=on,wait=off");
    // Plain-path options are not parsed as option strings: they take the path verbatim.
    expect(arg(argv, "-pidfile")).toBe("/run/vm,1/qemu.pid");
    expect(arg(argv, "-kernel")).toBe("/k,1/vmlinuz");
    expect(escapeQemuOptValue(",,")).toBe(",,,,");
  });

  it("rejects non-positive or fractional vCPU and memory counts", () => {
    expectUnprocessable({ ...base, vcpus: 0 }, "vcpus");
    expectUnprocessable({ ...base, vcpus: 1.5 }, "vcpus");
    expectUnprocessable({ ...base, vcpus: 10_000 }, "vcpus");
    expectUnprocessable({ ...base, memoryMiB: -64 }, "memoryMiB");
    expectUnprocessable({ ...base, memoryMiB: Number.NaN }, "memoryMiB");
  });

  it("rejects relative paths and paths with control characters", () => {
    expectUnprocessable({ ...base, diskPath: "disks/web-1.qcow2" }, "diskPath");
    expectUnprocessable({ ...base, runDir: "" }, "runDir");
    expectUnprocessable({ ...base, kernelPath: "vmlinuz" }, "kernelPath");
    expectUnprocessable({ ...base, diskPath: "/disks/a\nb.qcow2" }, "diskPath");
  });

  it("rejects initrd or kernel command line without a kernel", () => {
    expectUnprocessable({ ...base, initrdPath: "/images/initrd.img" }, "initrdPath");
    expectUnprocessable({ ...base, kernelCmdline: "console=ttyS0" }, "kernelCmdline");
  });

  it("rejects a vmId that is not a UUID, names QEMU would misparse, and unknown accelerators", () => {
    expectUnprocessable({ ...base, vmId: "vm-1" }, "vmId");
    expectUnprocessable({ ...base, name: "" }, "name");
    expectUnprocessable({ ...base, name: "guest=evil" }, "name");
    expectUnprocessable({ ...base, accel: "hvf" as "kvm" }, "accel");
  });

  it("rejects a run dir whose QMP socket path would not fit in a unix socket address", () => {
    expectUnprocessable({ ...base, runDir: `/run/${"d".repeat(120)}` }, "runDir");
  });
});
