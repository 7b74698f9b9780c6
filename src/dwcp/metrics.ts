/**
 * Prometheus metrics of DWCP (docs/dwcp.md §10, docs/metrics.md): mode, stream count,
 * measured goodput, predicted bandwidth and its error, RTT and the HDE ratios. The library
 * registers them on a registry the caller passes (the agent's /metrics), so dwcp stays
 * free of control-plane code. Gauges hold the latest tuner interval of whichever session
 * published last: an agent sends few migrations at once, and a label per session would
 * grow without bound.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { PageSendStats } from "./hde/page-sender.js";
import { Modes, type NetworkMode } from "./mode.js";

/** The DWCP metric set on one registry. */
export class DwcpMetrics {
  readonly mode: Gauge<"mode">;
  readonly streams: Gauge;
  readonly goodput: Gauge;
  readonly predictedBandwidth: Gauge;
  readonly rtt: Gauge;
  readonly compressionRatio: Gauge;
  readonly dedupRatio: Gauge;
  readonly zstdLevel: Gauge;
  readonly bytesIn: Counter;
  readonly bytesOnWire: Counter;
  readonly predictionError: Gauge;
  readonly sessions: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.mode = new Gauge({
      name: "novacron_dwcp_mode",
      help: "1 for the current network mode (datacenter, hybrid, internet), 0 for the others",
      labelNames: ["mode"],
      registers,
    });
    this.streams = new Gauge({
      name: "novacron_dwcp_streams",
      help: "AMST connections in use (0 when no session is open)",
      registers,
    });
    this.sessions = new Gauge({
      name: "novacron_dwcp_sessions",
      help: "DWCP sessions this process has open for migrations it sends",
      registers,
    });
    this.goodput = new Gauge({
      name: "novacron_dwcp_goodput_bytes_per_second",
      help: "Application bytes per second the session delivered over the last tuner interval",
      registers,
    });
    this.predictedBandwidth = new Gauge({
      name: "novacron_dwcp_predicted_bandwidth_bytes_per_second",
      help: "PBA prediction of the link goodput for the next seconds",
      registers,
    });
    this.predictionError = new Gauge({
      name: "novacron_dwcp_prediction_error_ratio",
      help: "Running mean absolute percentage error of the bandwidth prediction, as a ratio (0.1 = 10 %)",
      registers,
    });
    this.rtt = new Gauge({ name: "novacron_dwcp_rtt_seconds", help: "Smoothed round-trip time", registers });
    this.compressionRatio = new Gauge({
      name: "novacron_dwcp_hde_compression_ratio",
      help: "Input bytes per byte of HDE output (higher is better)",
      registers,
    });
    this.dedupRatio = new Gauge({
      name: "novacron_dwcp_hde_dedup_ratio",
      help: "Fraction of pages sent as references",
      registers,
    });
    this.zstdLevel = new Gauge({
      name: "novacron_dwcp_zstd_level",
      help: "zstd level in use (0 = off)",
      registers,
    });
    this.bytesIn = new Counter({
      name: "novacron_dwcp_input_bytes_total",
      help: "Bytes handed to DWCP for sending (the migration streams it relayed)",
      registers,
    });
    this.bytesOnWire = new Counter({
      name: "novacron_dwcp_wire_bytes_total",
      help: "Bytes DWCP wrote to its connections for those streams",
      registers,
    });
  }

  /** Publishes an HDE page stream's ratios (input/output bytes, share of references). */
  recordPages(stats: PageSendStats): void {
    if (stats.bytesOut > 0) this.compressionRatio.set(stats.bytesIn / stats.bytesOut);
    if (stats.pages > 0) this.dedupRatio.set(stats.ref / stats.pages);
  }

  /** Marks `mode` as current. */
  setMode(mode: NetworkMode): void {
    for (const m of Modes) this.mode.set({ mode: m }, m === mode ? 1 : 0);
  }
}
