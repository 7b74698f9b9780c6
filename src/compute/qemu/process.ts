/**
 * The lifecycle of one VM's QEMU process: launch (detached, so VMs outlive the agent),
 * adopt after an agent restart, exit detection for both our children and adopted
 * processes, graceful stop with escalation, and kill. Argv comes from machine.ts, the
 * QMP session from qmp.ts; this module owns the process and its run files.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, open, rename } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { describeError, NovaError } from "../../lib/errors.js";
import { Reverter } from "../../lib/revert.js";
import { waitFor } from "../../lib/wait.js";
import { queryStatus, quit, systemPowerdown } from "./commands.js";
import { describeExit, type QemuExit } from "./exit-reason.js";
import { fileSize, isQemuFor, readLogTail, readPidfile, removeFiles } from "./host-files.js";
import {
  buildQemuArgv,
  type MachineConfig,
  type VmRunPaths,
  validateMachineConfig,
  vmRunPaths,
} from "./machine.js";
import { QmpClient } from "./qmp.js";

export type { QemuExit } from "./exit-reason.js";

/** Options for QemuProcess.launch. */
export interface LaunchOptions {
  /** The QEMU binary. @defaultValue "qemu-system-x86_64" */
  qemuBinary?: string;
  /** Bound on QEMU coming up with a working QMP socket. @defaultValue 15000 */
  startTimeoutMs?: number;
}

/** Options for QemuProcess.stop. */
export interface StopOptions {
  /** How long the guest gets to power off after the ACPI button. @defaultValue 30000 */
  graceMs?: number;
}

const DEFAULT_BINARY = "qemu-system-x86_64";
const DEFAULT_START_TIMEOUT_MS = 15_000;
const DEFAULT_STOP_GRACE_MS = 30_000;
/** qemu.log is rotated at launch beyond this size. */
const MAX_QEMU_LOG_BYTES = 4 * 1024 * 1024;
/** `quit` makes QEMU exit at once; this only covers a QEMU stuck in I/O. */
const QUIT_GRACE_MS = 5_000;
/** SIGKILL cannot be ignored; this only bounds the wait for the kernel to reap. */
const KILL_WAIT_MS = 10_000;
/** After our child exits, wait this long for the QMP socket to drain its last events. */
const DRAIN_AFTER_EXIT_MS = 1_000;
/** Adopted process: how long to poll /proc quickly after the QMP socket closed. */
const FAST_POLL_MS = 5_000;
/** Adopted process: background /proc poll, in case the socket stays open (e.g. QEMU hung). */
const SLOW_POLL_INTERVAL_MS = 1_000;

/** Tracks one process's end from whichever signals are available. */
class ExitWatch {
  child: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  shutdownReason: string | undefined;
  requested: "stop" | "kill" | undefined;
  result: QemuExit | undefined;
  readonly promise: Promise<QemuExit>;
  private resolve!: (exit: QemuExit) => void;
  private readonly cleanups: Array<() => void> = [];

  constructor() {
    this.promise = new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  onSettle(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  settle(exit: QemuExit): void {
    if (this.result) return;
    this.result = exit;
    for (const cleanup of this.cleanups) cleanup();
    this.resolve(exit);
  }
}

/** A running QEMU process for one VM: launched by us or adopted after an agent restart. */
export class QemuProcess {
  private constructor(
    /** The VM this QEMU runs. */
    readonly config: MachineConfig,
    /** QEMU's pid. */
    readonly pid: number,
    /** The QMP session; closing it leaves QEMU running. */
    readonly qmp: QmpClient,
    private readonly watch: ExitWatch,
    private readonly child: ChildProcess | undefined,
    private readonly logOffset: number,
  ) {
    qmp.onEvent((ev) => {
      if (ev.event === "SHUTDOWN" && typeof ev.data?.reason === "string")
        watch.shutdownReason = ev.data.reason;
    });
    if (child) {
      this.watchChild(child);
    } else {
      this.watchAdopted();
    }
  }

  /** Resolves exactly once, when the process is gone, with why it ended. */
  get exited(): Promise<QemuExit> {
    return this.watch.promise;
  }

  /** The run-dir files of this VM. */
  get paths(): VmRunPaths {
    return vmRunPaths(this.config.runDir);
  }

  /** True when this handle re-attached to a QEMU started by an earlier agent. */
  get adopted(): boolean {
    return this.child === undefined;
  }

  /**
   * Starts QEMU for `cfg`, detached in its own session so it survives the agent, and
   * returns once QMP answers. On failure nothing is left running and the NOVA_QEMU_ERROR
   * carries the last lines of qemu.log.
   */
  static async launch(cfg: MachineConfig, opts: LaunchOptions = {}): Promise<QemuProcess> {
    const argv = buildQemuArgv(cfg);
    const paths = vmRunPaths(cfg.runDir);
    const binary = opts.qemuBinary ?? DEFAULT_BINARY;
    const startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    await mkdir(cfg.runDir, { recursive: true, mode: 0o750 });

    const existing = await readPidfile(paths.pidfile);
    if (existing !== undefined && (await isQemuFor(existing, cfg.vmId))) {
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        `Failed starting QEMU for VM ${cfg.vmId}: it is already running as pid ${existing}; adopt it instead`,
        { details: { vmId: cfg.vmId, pid: existing } },
      );
    }
    await removeFiles(paths.pidfile, paths.qmpSocket);

    // qemu.log is appended across restarts (earlier runs' errors stay readable); keep one
    // generation so it cannot grow without bound.
    if ((await fileSize(paths.qemuLog)) > MAX_QEMU_LOG_BYTES)
      await rename(paths.qemuLog, `${paths.qemuLog}.1`);
    const logOffset = await fileSize(paths.qemuLog);
    const log = await open(paths.qemuLog, "a", 0o640);
    const watch = new ExitWatch();
    const revert = new Reverter();
    let child: ChildProcess;
    try {
      // cwd = runDir so QEMU does not pin whatever directory the agent happened to start in.
      child = spawn(binary, argv, { cwd: cfg.runDir, detached: true, stdio: ["ignore", log.fd, log.fd] });
    } catch (err) {
      await log.close();
      throw new NovaError(
        "NOVA_QEMU_ERROR",
        `Failed starting QEMU for VM "${cfg.name}": ${describeError(err)}`,
        {
          details: { vmId: cfg.vmId },
          cause: err,
        },
      );
    }
    // Listeners go on before any await: a spawn failure is emitted on the next tick.
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    child.once("exit", (code, signal) => {
      watch.child = { code, signal };
    });
    const childGone = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", () => resolve());
    });
    // Without unref the agent's event loop would stay alive as long as any VM runs.
    child.unref();
    await log.close();
    revert.add(async () => {
      if (watch.child === undefined && child.pid !== undefined) child.kill("SIGKILL");
      await Promise.race([childGone, delay(KILL_WAIT_MS)]);
      await removeFiles(paths.qmpSocket, paths.pidfile);
    });

    const fail = async (reason: string, err?: unknown): Promise<never> => {
      // A QMP failure during start-up is usually QEMU dying; its exit says more than the socket.
      if (watch.child === undefined && err !== undefined) await Promise.race([childGone, delay(500)]);
      const exit = watch.child;
      const cause = exit
        ? exit.signal
          ? `QEMU was killed by ${exit.signal}`
          : `QEMU exited with code ${exit.code}`
        : reason;
      await revert.fail();
      const tail = await readLogTail(paths.qemuLog, logOffset, 5);
      const logPart = tail.length > 0 ? ` — qemu.log: ${tail.join(" | ")}` : "";
      throw new NovaError(
        "NOVA_QEMU_ERROR",
        `Failed starting QEMU for VM "${cfg.name}": ${cause}${logPart}`,
        {
          details: { vmId: cfg.vmId, qemuLog: paths.qemuLog, logTail: tail },
          ...(err === undefined ? {} : { cause: err }),
        },
      );
    };

    if (child.pid === undefined) {
      const err = await spawnError;
      return fail(`cannot run ${binary}: ${err.message}`, err);
    }
    const pid = child.pid;

    // QEMU exiting while we wait for its socket (bad kernel path, bad disk…) ends the wait.
    const exitedEarly = new AbortController();
    void childGone.then(() => exitedEarly.abort());
    let qmp: QmpClient;
    try {
      qmp = await waitFor(
        async () => {
          if (watch.child !== undefined) return false;
          return QmpClient.connect(paths.qmpSocket, { timeoutMs: 2_000 });
        },
        {
          timeoutMs: startTimeoutMs,
          intervalMs: 50,
          what: `QMP socket ${paths.qmpSocket}`,
          signal: exitedEarly.signal,
        },
      );
    } catch (err) {
      // fail() turns an early exit into "QEMU exited with code N" plus QEMU's own words from qemu.log.
      return fail(describeError(err), err);
    }
    revert.add(() => qmp.close());

    let pidInFile: number;
    try {
      // QEMU writes the pidfile before it opens the monitor, so it is there by now.
      pidInFile = await waitFor(() => readPidfile(paths.pidfile), { timeoutMs: 2_000, what: paths.pidfile });
      await queryStatus(qmp);
    } catch (err) {
      return fail(describeError(err), err);
    }
    if (pidInFile !== pid) {
      return fail(`pidfile ${paths.pidfile} names pid ${pidInFile}, but QEMU runs as pid ${pid}`);
    }
    revert.success();
    return new QemuProcess(cfg, pid, qmp, watch, child, logOffset);
  }

  /**
   * Re-attaches to the QEMU an earlier agent started for `cfg`, identified by the pidfile
   * and the VM's UUID in /proc/<pid>/cmdline. Returns null, after removing the stale
   * pidfile and socket, when that process is gone. Never kills anything.
   */
  static async adopt(
    cfg: MachineConfig,
    opts: { connectTimeoutMs?: number } = {},
  ): Promise<QemuProcess | null> {
    validateMachineConfig(cfg);
    const paths = vmRunPaths(cfg.runDir);
    const pid = await readPidfile(paths.pidfile);
    if (pid === undefined || !(await isQemuFor(pid, cfg.vmId))) {
      await removeFiles(paths.pidfile, paths.qmpSocket);
      return null;
    }
    const logOffset = await fileSize(paths.qemuLog);
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: opts.connectTimeoutMs ?? 5_000 });
    } catch (err) {
      // It may have exited between the /proc check and the connect.
      if (!(await isQemuFor(pid, cfg.vmId))) {
        await removeFiles(paths.pidfile, paths.qmpSocket);
        return null;
      }
      throw new NovaError(
        "NOVA_QMP_PROTOCOL",
        `Failed adopting QEMU pid ${pid} for VM ${cfg.vmId}: it runs but its QMP socket does not answer: ${describeError(err)}`,
        { details: { vmId: cfg.vmId, pid, qmpSocket: paths.qmpSocket }, cause: err },
      );
    }
    return new QemuProcess(cfg, pid, qmp, new ExitWatch(), undefined, logOffset);
  }

  /**
   * Stops gracefully: ACPI power button, up to `graceMs` for the guest to power off, then
   * QMP `quit`, then SIGKILL. The exit is `expected` whichever step ended it.
   */
  async stop(opts: StopOptions = {}): Promise<QemuExit> {
    if (this.watch.result) return this.watch.result;
    this.watch.requested ??= "stop";
    const graceMs = opts.graceMs ?? DEFAULT_STOP_GRACE_MS;
    try {
      await systemPowerdown(this.qmp);
      const exit = await this.waitExit(graceMs);
      if (exit) return exit;
    } catch {
      // QMP gone or refusing: go straight to the next step.
    }
    try {
      await quit(this.qmp);
      const exit = await this.waitExit(QUIT_GRACE_MS);
      if (exit) return exit;
    } catch {
      // Same: escalate.
    }
    return this.kill();
  }

  /** SIGKILLs QEMU (after checking the pid is still this VM's) and waits for the exit. */
  async kill(): Promise<QemuExit> {
    if (this.watch.result) return this.watch.result;
    this.watch.requested ??= "kill";
    if (this.child) {
      this.child.kill("SIGKILL");
    } else if (await isQemuFor(this.pid, this.config.vmId)) {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    }
    const exit = await this.waitExit(KILL_WAIT_MS);
    if (exit) return exit;
    throw new NovaError(
      "NOVA_TIMEOUT",
      `QEMU pid ${this.pid} did not exit within ${KILL_WAIT_MS} ms of SIGKILL`,
      {
        details: { vmId: this.config.vmId, pid: this.pid },
      },
    );
  }

  private async waitExit(ms: number): Promise<QemuExit | undefined> {
    const timer = new AbortController();
    try {
      return await Promise.race([this.watch.promise, delay(ms, undefined, { signal: timer.signal })]);
    } finally {
      timer.abort();
    }
  }

  private watchChild(child: ChildProcess): void {
    const onExit = async () => {
      // QEMU writes its SHUTDOWN event before exiting, but the exit notification can
      // overtake the socket data: let the socket drain so the reason is not lost.
      if (!this.qmp.closed) {
        await Promise.race([
          new Promise<void>((r) => this.qmp.onClose(() => r())),
          delay(DRAIN_AFTER_EXIT_MS),
        ]);
      }
      await this.finish();
    };
    if (this.watch.child !== undefined) {
      void onExit();
    } else {
      child.once("exit", () => void onExit());
    }
  }

  private watchAdopted(): void {
    let checking = false;
    const check = async () => {
      if (checking || this.watch.result) return;
      checking = true;
      try {
        if (!(await isQemuFor(this.pid, this.config.vmId))) await this.finish();
      } finally {
        checking = false;
      }
    };
    const slow = setInterval(() => void check().catch(() => {}), SLOW_POLL_INTERVAL_MS);
    slow.unref();
    this.watch.onSettle(() => clearInterval(slow));
    this.qmp.onClose(() => {
      // The socket closing is the first sign of exit; /proc follows within milliseconds.
      void waitFor(async () => !(await isQemuFor(this.pid, this.config.vmId)), {
        timeoutMs: FAST_POLL_MS,
        intervalMs: 25,
      })
        .then(() => this.finish())
        .catch(() => {
          // Still alive (someone closed our session, or QEMU hangs): the slow poll goes on.
        });
    });
  }

  private finishing: Promise<void> | undefined;

  private finish(): Promise<void> {
    this.finishing ??= (async () => {
      const tail = await readLogTail(this.paths.qemuLog, this.logOffset, 1).catch(() => []);
      const exit = describeExit({
        pid: this.pid,
        child: this.child !== undefined,
        code: this.watch.child?.code,
        signal: this.watch.child?.signal,
        shutdownReason: this.watch.shutdownReason,
        requested: this.watch.requested,
        lastLogLine: tail[0],
      });
      // QEMU removes these on a clean exit; after SIGKILL they linger and would make the
      // next adopt() look at a dead pid. Only remove what still names this pid.
      if ((await readPidfile(this.paths.pidfile).catch(() => undefined)) === this.pid) {
        await removeFiles(this.paths.pidfile, this.paths.qmpSocket).catch(() => {});
      }
      if (!this.qmp.closed) await this.qmp.close();
      this.watch.settle(exit);
    })();
    return this.finishing;
  }
}
