/**
 * An SVG chart of a migration's wire and logical bytes over time: the history the server
 * stored (GET /v1/migrations/{id}/samples, at most one sample a second) followed by the
 * progress events received live since its last sample. Logical bytes are what the
 * transfer carried for the guest (memory and disk); wire bytes what crossed the network
 * (DWCP's dedup and compression make it smaller). QEMU's transport reports no wire figure:
 * it sends the logical bytes as they are, so one line stands for both.
 */
import type { MigrationProgress, MigrationSample } from "../../api/types/migrations.js";
import type { ProgressSample } from "../api/events.js";
import { bytes, duration } from "../format.js";

/** Wire and logical bytes at one instant (ms since the epoch, the server's clock). */
export interface ChartPoint {
  at: number;
  wire: number;
  logical: number;
  measuredWire: boolean;
}

/** Wire and logical bytes of one live reading (QEMU's transport: wire = logical). */
export function byteCounts(p: MigrationProgress): { wire: number; logical: number; measuredWire: boolean } {
  const t = p.transport;
  const logical =
    t?.logicalBytes !== undefined
      ? t.logicalBytes + (t.diskLogicalBytes ?? 0)
      : (p.memoryBytesSent ?? 0) + (p.diskBytesDone ?? 0);
  if (t?.wireBytes !== undefined)
    return { wire: t.wireBytes + (t.diskWireBytes ?? 0), logical, measuredWire: true };
  return { wire: logical, logical, measuredWire: false };
}

/** A stored sample as a point (QEMU's transport: wire = logical). */
export function pointOfSample(s: MigrationSample): ChartPoint {
  const at = Date.parse(s.at);
  const logical =
    s.memoryLogicalBytes !== null
      ? s.memoryLogicalBytes + (s.diskLogicalBytes ?? 0)
      : s.memoryBytesSent + s.diskBytesDone;
  if (s.memoryWireBytes !== null)
    return { at, wire: s.memoryWireBytes + (s.diskWireBytes ?? 0), logical, measuredWire: true };
  return { at, wire: logical, logical, measuredWire: false };
}

/** The stored history, then the live readings taken after its last sample. */
export function chartPoints(
  history: readonly MigrationSample[],
  live: readonly ProgressSample[],
): ChartPoint[] {
  const points = history.map(pointOfSample);
  const after = points.at(-1)?.at ?? Number.NEGATIVE_INFINITY;
  for (const l of live) if (l.at > after) points.push({ at: l.at, ...byteCounts(l.progress) });
  return points;
}

const W = 600;
const H = 200;
const PAD = { left: 64, right: 12, top: 12, bottom: 28 };

/** The chart, or a line saying there is nothing to draw (yet). */
export function BytesChart({ samples, finished }: { samples: readonly ChartPoint[]; finished: boolean }) {
  if (samples.length < 2)
    return (
      <p className="muted">
        {finished
          ? "No progress was recorded for this migration."
          : "The chart fills in as progress arrives."}
      </p>
    );
  const t0 = samples[0]!.at;
  // Both are running totals; a sample taken across the switch-over can report less than
  // the one before it, so each line keeps the highest total reached.
  let wireMax = 0;
  let logicalMax = 0;
  const points = samples.map((s) => {
    wireMax = Math.max(wireMax, s.wire);
    logicalMax = Math.max(logicalMax, s.logical);
    return { t: s.at - t0, wire: wireMax, logical: logicalMax, measuredWire: s.measuredWire };
  });
  const tMax = Math.max(1, points.at(-1)!.t);
  const yMax = Math.max(1, ...points.map((p) => Math.max(p.wire, p.logical)));
  const x = (t: number) => PAD.left + (t / tMax) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  const line = (key: "wire" | "logical") =>
    points.map((p, i) => `${i === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  const last = points.at(-1)!;
  const measured = points.some((p) => p.measuredWire);
  return (
    <figure className="chart">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`Wire bytes ${bytes(last.wire)} and logical bytes ${bytes(last.logical)} over ${duration(tMax)}`}
      >
        <line x1={PAD.left} y1={H - PAD.bottom} x2={W - PAD.right} y2={H - PAD.bottom} className="axis" />
        <line x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={H - PAD.bottom} className="axis" />
        <text x={PAD.left - 6} y={PAD.top + 10} textAnchor="end" className="tick">
          {bytes(yMax)}
        </text>
        <text x={PAD.left - 6} y={H - PAD.bottom} textAnchor="end" className="tick">
          0
        </text>
        <text x={W - PAD.right} y={H - 8} textAnchor="end" className="tick">
          {duration(tMax)}
        </text>
        <path d={line("logical")} className="series-logical" />
        {measured ? <path d={line("wire")} className="series-wire" /> : null}
      </svg>
      <figcaption>
        <span className="key key-logical" /> logical {bytes(last.logical)}{" "}
        {measured ? (
          <>
            <span className="key key-wire" /> wire {bytes(last.wire)}
          </>
        ) : (
          "(QEMU's transport: wire bytes equal logical bytes)"
        )}
      </figcaption>
    </figure>
  );
}
