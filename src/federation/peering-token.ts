/**
 * The text form of a peering token, `nvf1.<secret>.<CA fingerprint hex>.<API URL, base64url>`:
 * besides the one-time secret it says where the cluster that made it answers and which CA
 * it must present, so the redeeming cluster pins the right CA before it sends the secret
 * (docs/federation.md §1). The making cluster stores only the secret's hash.
 */
import { NovaError } from "../lib/errors.js";

const PREFIX = "nvf1";

/** What a token carries. */
export interface PeeringToken {
  secret: string;
  caFingerprint: string;
  apiUrl: string;
}

/** The text form. */
export function formatPeeringToken(t: PeeringToken): string {
  return [
    PREFIX,
    t.secret,
    t.caFingerprint.replace(/^sha256:/, ""),
    Buffer.from(t.apiUrl).toString("base64url"),
  ].join(".");
}

/** Parses a token; NOVA_FED_TOKEN_INVALID when it is not one. */
export function parsePeeringToken(text: string): PeeringToken {
  const parts = text.trim().split(".");
  const bad = (): never => {
    throw new NovaError(
      "NOVA_FED_TOKEN_INVALID",
      "This is not a NovaCron peering token (nvf1.<secret>.<CA fingerprint>.<URL>). Make one on the other cluster with: novacron cluster peer token",
    );
  };
  if (parts.length !== 4 || parts[0] !== PREFIX || !parts[1] || !/^[0-9a-f]{64}$/.test(parts[2] ?? "")) bad();
  let apiUrl = "";
  try {
    apiUrl = Buffer.from(parts[3]!, "base64url").toString("utf8");
    const u = new URL(apiUrl);
    if (u.protocol !== "https:") bad();
  } catch {
    bad();
  }
  return { secret: parts[1]!, caFingerprint: `sha256:${parts[2]}`, apiUrl };
}
