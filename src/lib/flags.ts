/**
 * Parsing of command-line values shared by the CLI and the daemons' start-up: each error
 * names the flag and the value so the user knows what to fix (NOVA_CONFIG, exit 2).
 */
import { NovaError } from "./errors.js";

/** Parses "host:port" (or ":port", or "port") into its parts. */
export function parseListen(spec: string, defaultHost = "127.0.0.1"): { host: string; port: number } {
  const match = /^(?:(.*):)?(\d{1,5})$/.exec(spec);
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port > 65535) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Invalid listen address ${spec}: expected HOST:PORT, e.g. 127.0.0.1:7700`,
    );
  }
  return { host: match[1] || defaultHost, port };
}

/** Parses a whole number above zero given for `flag`. */
export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new NovaError("NOVA_CONFIG", `${flag} must be a positive whole number, got ${value}`);
  return n;
}

/** Parses a TCP port (0 = any free port) given for `flag`. */
export function parsePort(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new NovaError("NOVA_CONFIG", `${flag} must be a port from 0 to 65535, got "${v}"`);
  return n;
}
