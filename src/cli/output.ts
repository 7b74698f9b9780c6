/** CLI output: aligned tables for people, JSON for machines, one-line errors with exit codes. */
import { NovaError } from "../lib/errors.js";

/** Exit codes of the novacron command. */
export const EXIT = {
  ok: 0,
  /** The operation failed (the server refused it, or it ended badly). */
  failed: 1,
  /** Bad usage or configuration. */
  usage: 2,
  /** The server could not be reached. */
  unreachable: 3,
} as const;

/** Prints rows as an aligned table with a header. */
export function printTable(
  headers: string[],
  rows: (string | number | boolean | null | undefined)[][],
): void {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  for (const row of cells) {
    process.stdout.write(
      `${row.map((c, i) => (i === row.length - 1 ? c : (c ?? "").padEnd(widths[i]!))).join("  ")}\n`,
    );
  }
}

/** Prints key/value pairs, aligned. */
export function printFields(fields: [string, unknown][]): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields)
    process.stdout.write(
      `${`${k}:`.padEnd(width + 2)}${v === null || v === undefined || v === "" ? "-" : String(v)}\n`,
    );
}

/** Prints JSON. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Formats a byte count in binary units. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Maps an error to the one-line message and exit code the CLI ends with. */
export function exitFor(err: unknown): { message: string; code: number } {
  if (err instanceof NovaError) {
    // A missing or too old QEMU stops `novacron agent` like any other host configuration
    // problem (e.g. KVM forced on a host without it).
    const code =
      err.code === "NOVA_CONFIG" || err.code === "NOVA_BAD_REQUEST" || err.code === "NOVA_QEMU_UNSUPPORTED"
        ? EXIT.usage
        : err.code === "NOVA_HOST_UNREACHABLE"
          ? EXIT.unreachable
          : EXIT.failed;
    return { message: `${err.message} [${err.code}]`, code };
  }
  return { message: err instanceof Error ? err.message : String(err), code: EXIT.failed };
}
