/**
 * The agent's fencing check (docs/federation.md §10, "Why at most one copy runs"): a copy
 * of a VM runs only with its owner's current token (owner cluster, epoch). The agent keeps,
 * per VM, the highest token it has seen (fence-store.ts) and judges every request that
 * carries one here. Pure, so every case is unit-tested.
 *
 * The invariant: the held token never goes down (a higher epoch replaces it, an equal or
 * lower one leaves it), and nothing starts or resumes a copy unless the request's token
 * is the held one and names this agent's own cluster. A newer token is kept even by a
 * request that is then refused because it names another cluster: that is how the source
 * copy of a released VM is fenced. Stopping and deleting are never refused.
 */
import type { FenceToken } from "../api/types/agent.js";

/**
 * What a request would do to the VM: `run` starts or resumes a copy (PUT power running,
 * incoming finish, cancel-outgoing's resume); `record` only hands the agent a token (the
 * fence endpoint); `safe` makes things safer (stop, delete) and is never refused.
 */
export type FenceIntent = "run" | "record" | "safe";

/** Why a request was refused. */
export type FenceRefusal =
  /** The request's epoch is lower than the held one. */
  | "older"
  /** Same epoch, another owner: two owners cannot share an epoch. */
  | "conflict"
  /** The token (now held) names another cluster: the VM is owned there. */
  | "other-owner"
  /** The agent does not know its own cluster yet, so it cannot tell whose the VM is. */
  | "unknown-cluster";

/** The check's outcome: the token to hold from now on, whether that changed, and any refusal. */
export interface FenceVerdict {
  /** The token held after this request (undefined only when none was held and none kept). */
  hold: FenceToken | undefined;
  /** True when `hold` differs from the token held before (it must be persisted). */
  changed: boolean;
  /** Set when the request is refused. */
  refusal?: FenceRefusal;
}

/** The facts of one check. */
export interface FenceInput {
  /** The highest token the agent holds for the VM, if any. */
  held: FenceToken | undefined;
  /** The token the request carries. */
  got: FenceToken;
  /** The agent's own cluster id (undefined until it learned it from its server). */
  ownCluster: string | undefined;
  intent: FenceIntent;
}

/** Judges one request that carries a token. */
export function judgeFence({ held, got, ownCluster, intent }: FenceInput): FenceVerdict {
  const keep: FenceVerdict = { hold: held, changed: false };
  if (held && got.epoch < held.epoch) {
    // A late or replayed request: it may still stop or delete, never run, and never lowers the token.
    return intent === "run" ? { ...keep, refusal: "older" } : keep;
  }
  if (held && got.epoch === held.epoch && got.owner !== held.owner) {
    return intent === "safe" ? keep : { ...keep, refusal: "conflict" };
  }
  const newer = !held || got.epoch > held.epoch;
  const verdict: FenceVerdict = newer ? { hold: got, changed: true } : keep;
  if (intent !== "run") return verdict;
  return { ...verdict, ...runRefusal(verdict.hold, ownCluster) };
}

/**
 * Whether the agent may start or resume a copy on its own (a start it converges to after
 * the request was admitted, which a fence may have overtaken): only with a held token that
 * names its own cluster.
 */
export function judgeOwnStart(held: FenceToken | undefined, ownCluster: string | undefined): FenceVerdict {
  return { hold: held, changed: false, ...runRefusal(held, ownCluster) };
}

function runRefusal(
  hold: FenceToken | undefined,
  ownCluster: string | undefined,
): { refusal?: FenceRefusal } {
  if (ownCluster === undefined) return { refusal: "unknown-cluster" };
  // No token at all cannot happen after an admitted request; refusing it is the safe side.
  if (!hold || hold.owner !== ownCluster) return { refusal: "other-owner" };
  return {};
}

/** One line naming a token, for messages. */
export function describeFence(token: FenceToken | undefined): string {
  return token ? `(owner ${token.owner}, epoch ${token.epoch})` : "no token";
}

/** Why a refusal happened, in words, for NOVA_ACP_FENCED's message. */
export function fenceRefusalText(
  refusal: FenceRefusal,
  held: FenceToken | undefined,
  got: FenceToken | undefined,
  ownCluster: string | undefined,
): string {
  const holds = `this host holds the fencing token ${describeFence(held)}`;
  const carried = got ? `the request carries ${describeFence(got)}` : "the agent would start it on its own";
  switch (refusal) {
    case "older":
      return `${holds} and ${carried}, which is older: the VM is owned at a newer epoch (the caller's view of its owner is out of date)`;
    case "conflict":
      return `${holds} and ${carried}: two owners at the same epoch, so one of them is wrong`;
    case "other-owner":
      return `${holds}, ${carried}, and this host's cluster is ${ownCluster}: the VM is owned by another cluster (or at a newer epoch), so this copy must not run here`;
    case "unknown-cluster":
      return `${carried}, but this agent has not learned its cluster's id from its server yet, so it cannot tell whether its cluster owns the VM; it learns it when it next registers (retry shortly)`;
  }
}
