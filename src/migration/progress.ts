/** Turns what the source agent reads from QEMU into the migration's progress view. Pure. */
import type { AgentOutgoingStatus } from "../api/types/agent.js";
import type { MigrationProgress } from "../api/types/migrations.js";

/** Progress for the API and the CLI's progress bar. */
export function toProgress(phase: string, s: AgentOutgoingStatus): MigrationProgress {
  const mem = s.memory;
  const mirror = s.mirror;
  const bytesPerSec = mem ? (mem.mbps * 1e6) / 8 : 0;
  const remaining = mem?.remainingBytes ?? 0;
  // ETA: what is left divided by how fast it shrinks (sending rate minus re-dirtying).
  const net = bytesPerSec - (mem?.dirtyBytesPerSecond ?? 0);
  const eta = mem && remaining > 0 && net > 0 ? remaining / net : mem?.status === "completed" ? 0 : null;
  return {
    phase,
    diskBytesDone: mirror?.offset ?? 0,
    diskBytesTotal: mirror?.len ?? 0,
    memoryBytesSent: mem?.transferredBytes ?? 0,
    memoryBytesRemaining: remaining,
    memoryBytesTotal: mem?.totalBytes ?? 0,
    pass: mem?.pass ?? 0,
    pagesPerSecond: mem?.pagesPerSecond ?? 0,
    dirtyBytesPerSecond: mem?.dirtyBytesPerSecond ?? 0,
    throughputMbps: mem?.mbps ?? 0,
    expectedDowntimeMs: mem?.expectedDowntimeMs ?? null,
    etaSeconds: eta === null ? null : Math.round(eta * 10) / 10,
    autoConvergeThrottlePct: mem?.cpuThrottlePercentage ?? null,
    ...(s.transport
      ? {
          transport: {
            chosen: s.transport.chosen,
            mode: s.transport.relay?.mode ?? s.transport.mode,
            reason: s.transport.reason,
            ...(s.transport.relay
              ? {
                  wireBytes: s.transport.relay.wireBytes,
                  logicalBytes: s.transport.relay.logicalBytes,
                  ratio: Math.round(s.transport.relay.ratio * 100) / 100,
                  streams: s.transport.relay.streams,
                  ...(s.transport.relay.startedFrom
                    ? {
                        startedFromPath: {
                          streams: s.transport.relay.startedFrom.streams,
                          capacityBps: s.transport.relay.startedFrom.capacityBps,
                          measuredAt: new Date(s.transport.relay.startedFrom.at).toISOString(),
                        },
                      }
                    : {}),
                  ...(s.transport.relay.disk
                    ? {
                        diskWireBytes: s.transport.relay.disk.wireBytes,
                        diskLogicalBytes: s.transport.relay.disk.logicalBytes,
                      }
                    : {}),
                }
              : {}),
          },
        }
      : {}),
  };
}
