/**
 * An SVG chart of a migration's wire and logical bytes over time, drawn from the progress
 * samples the event stream delivered. Logical bytes are what the transfer carried for the
 * guest (memory and disk); wire bytes what crossed the network (DWCP's dedup and
 * compression make it smaller). QEMU's transport reports no wire figure: it sends the
 * logical bytes as they are, so one line stands for both.
 */
import type { MigrationProgress } from "../../api/types/migrations.js";
import type { ProgressSample } from "../api/events.js";
import { bytes, duration } from "../format.js";

/** Wire and logical bytes of one sample (QEMU's transport: wire = logical). */
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

const W = 600;
const H = 200;
const PAD = { left: 64, right: 12, top: 12, bottom: 28 };

/** The chart, or a line saying there is nothing to draw yet. */
export function BytesChart({ samples }: { samples: readonly ProgressSample[] }) {
  if (samples.length < 2)
    return <p className="muted">The chart fills in as progress arrives while this page is open.</p>;
  const t0 = samples[0]!.at;
  // Both are running totals; a sample taken across the switch-over can report less than
  // the one before it, so each line keeps the highest total reached.
  let wireMax = 0;
  let logicalMax = 0;
  const points = samples.map((s) => {
    const c = byteCounts(s.progress);
    wireMax = Math.max(wireMax, c.wire);
    logicalMax = Math.max(logicalMax, c.logical);
    return { t: s.at - t0, wire: wireMax, logical: logicalMax, measuredWire: c.measuredWire };
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
