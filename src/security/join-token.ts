/**
 * The text form of a join token, `nvj1.<secret>.<CA fingerprint hex>`: besides the secret
 * it carries the cluster CA's fingerprint, so that the agent can tell the real server from
 * an impostor before it sends the secret anywhere (docs/security.md). The server stores
 * only the token's hash (cluster/store/join-tokens.ts).
 */
import { NovaError } from "../lib/errors.js";

const PREFIX = "nvj1";

/** The text form: `nvj1.<secret>.<CA fingerprint hex>`. */
export function formatJoinToken(secret: string, caFingerprint: string): string {
  return `${PREFIX}.${secret}.${caFingerprint.replace(/^sha256:/, "")}`;
}

/** Splits a join token; NOVA_CONFIG when it is not one. */
export function parseJoinToken(token: string): { caFingerprint: string } {
  const parts = token.trim().split(".");
  if (parts.length !== 3 || parts[0] !== PREFIX || !/^[0-9a-f]{64}$/.test(parts[2]!) || !parts[1]) {
    throw new NovaError(
      "NOVA_CONFIG",
      "This is not a NovaCron join token (nvj1.<secret>.<CA fingerprint>). Make one on the server with: novacron host join-token <host name>",
    );
  }
  return { caFingerprint: `sha256:${parts[2]}` };
}
