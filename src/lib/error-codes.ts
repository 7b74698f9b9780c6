/**
 * The registry of NovaCron error codes: one entry per code with its HTTP status, whether a
 * retry can help, and a one-line description. docs/errors.md is generated from this table
 * (`npm run docs:errors`) and a unit test keeps them in step.
 */

/** One registry entry. */
export interface ErrorCodeEntry {
  status: number;
  retryable: boolean;
  description: string;
}

/** Every error code NovaCron can return. */
export const ERROR_CODES = {
  NOVA_BAD_REQUEST: {
    status: 400,
    retryable: false,
    description: "The request body, query or parameters are malformed or fail validation.",
  },
  NOVA_UNAUTHENTICATED: {
    status: 401,
    retryable: false,
    description:
      "No credential (bearer token or session cookie), or the token or session is unknown (logged out, deleted); or a client certificate (or join token) that is not, or no longer, valid.",
  },
  NOVA_TLS_UNTRUSTED: {
    status: 502,
    retryable: false,
    description:
      "The peer's TLS certificate is not the one expected: its CA's fingerprint differs from the pinned one (login, join token), or it names another identity.",
  },
  NOVA_PAYLOAD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description:
      "The request body is larger than the API accepts (1 MiB); details.limitBytes gives the limit.",
  },
  NOVA_URI_TOO_LONG: {
    status: 414,
    retryable: false,
    description: "A path parameter (an id or name) is longer than the API accepts (128 characters).",
  },
  NOVA_RATE_LIMITED: {
    status: 429,
    retryable: true,
    description:
      "Too many requests from this token or address, too many failed authentications from this address, or too many open event streams; retry after the Retry-After header's seconds (details.retryAfterSeconds, details.limit says which limit).",
  },
  NOVA_FORBIDDEN: {
    status: 403,
    retryable: false,
    description:
      "The token or the user is valid but not allowed to do this (details.needs names the permission).",
  },
  NOVA_LOGIN_FAILED: {
    status: 401,
    retryable: false,
    description:
      "Wrong username or password (the two are not told apart); counts towards the account's lock-out and the address's failed-authentication budget.",
  },
  NOVA_MFA_REQUIRED: {
    status: 401,
    retryable: false,
    description:
      "The password is right and the account has a second factor: send the login again with `totp` (the authenticator app's code) or `recoveryCode`.",
  },
  NOVA_MFA_INVALID: {
    status: 401,
    retryable: false,
    description:
      "The TOTP code or recovery code is wrong (or not of the current 30 s window, one either side); counts towards the lock-out.",
  },
  NOVA_MFA_REUSED: {
    status: 401,
    retryable: false,
    description:
      "The TOTP code was already accepted once (wait for the next one), or the recovery code was already used; counts towards the lock-out.",
  },
  NOVA_ACCOUNT_LOCKED: {
    status: 423,
    retryable: true,
    description:
      "The account is locked after repeated failed logins; details.unlocksAt says when it unlocks (an admin can unlock it sooner: novacron user unlock NAME).",
  },
  NOVA_SESSION_EXPIRED: {
    status: 401,
    retryable: false,
    description:
      "The login session ended (idle timeout or absolute lifetime, details say which): log in again.",
  },
  NOVA_CSRF_REJECTED: {
    status: 403,
    retryable: false,
    description:
      "A state-changing request authenticated by the session cookie without the session's CSRF token in X-CSRF-Token, or with a wrong one; nothing was done.",
  },
  NOVA_NOT_FOUND: {
    status: 404,
    retryable: false,
    description: "The named resource (host, image, VM, route) does not exist.",
  },
  NOVA_CONFLICT: {
    status: 409,
    retryable: false,
    description: "The resource already exists (e.g. a VM or image with that name).",
  },
  NOVA_ILLEGAL_STATE: {
    status: 409,
    retryable: false,
    description:
      "The operation is not allowed in the resource's current state; details name the state and what is allowed.",
  },
  NOVA_STATE_CHANGED: {
    status: 409,
    retryable: true,
    description:
      "Another writer moved the resource to a different state first (a lost compare-and-set); read it again and retry if the action still applies.",
  },
  NOVA_NO_CAPACITY: {
    status: 422,
    retryable: true,
    description: "Valid, but no host can take it; details say what was needed and the largest free host.",
  },
  NOVA_HOST_DOWN: {
    status: 409,
    retryable: true,
    description:
      "The host is dead (it missed heartbeats), and the operation needs its agent answering (e.g. live-migrating its VMs off it in a drain). Bring the agent back, or wait for its next heartbeat.",
  },
  NOVA_DRAIN_ACTIVE: {
    status: 409,
    retryable: false,
    description:
      "The host is being drained already; details name the drain. Follow it with novacron host drain-status HOST, or cancel it with novacron host drain HOST --cancel.",
  },
  NOVA_DRAIN_NO_TARGET: {
    status: 422,
    retryable: true,
    description:
      "A drain was refused, with nothing changed: the host is the last schedulable one (no other host is alive and uncordoned), or the other hosts cannot take its running VMs; details list each VM that does not fit and why. Add or uncordon a host, or free memory, then drain again.",
  },
  NOVA_HA_LOCAL_DISK: {
    status: 422,
    retryable: false,
    description:
      "A VM with `ha: restart` must keep its disk in a shared storage pool: a disk on a host's local image store dies with the host, so no other host could restart it. Nothing was changed. Create it with --storage-pool NAME (novacron storage pool list), or leave HA off.",
  },
  NOVA_STORAGE_POOL_IN_USE: {
    status: 409,
    retryable: false,
    description:
      "A storage pool that VMs still keep their disks in cannot be removed; details name them. Delete those VMs first.",
  },
  NOVA_DRAIN_MIGRATION_FAILED: {
    status: 500,
    retryable: true,
    description:
      "In a drain's report: the VM's live migration failed or was cancelled and rolled back, so the VM still runs on the drained host; the reason names the migration and its error (novacron migration show ID).",
  },
  NOVA_UNPROCESSABLE: {
    status: 422,
    retryable: false,
    description: "Valid, but impossible as asked (e.g. an image file that is not a disk image).",
  },
  NOVA_HOST_UNREACHABLE: {
    status: 502,
    retryable: true,
    description: "The server could not reach the host's agent.",
  },
  NOVA_AGENT_ERROR: {
    status: 502,
    retryable: false,
    description: "The host's agent failed the operation; the message carries the agent's reason.",
  },
  NOVA_REPLY_TOO_LARGE: {
    status: 502,
    retryable: false,
    description:
      "A peer (an agent, the server, an outside service) sent a reply larger than the reader accepts; the transfer was aborted. details name the peer and limitBytes.",
  },
  NOVA_QEMU_ERROR: {
    status: 500,
    retryable: false,
    description: "QEMU failed to start or answered a QMP command with an error.",
  },
  NOVA_QMP_PROTOCOL: {
    status: 500,
    retryable: false,
    description: "The QMP conversation broke: bad greeting, malformed reply, or closed socket.",
  },
  NOVA_TIMEOUT: {
    status: 504,
    retryable: true,
    description: "An operation did not finish within its time limit.",
  },
  NOVA_CONFIG: {
    status: 400,
    retryable: false,
    description: "Configuration (flags, environment, config file) is missing or invalid.",
  },
  NOVA_STORE: { status: 500, retryable: true, description: "The database failed or is unreachable." },
  NOVA_SCHEMA_TOO_NEW: {
    status: 500,
    retryable: false,
    description: "The database schema is newer than this NovaCron; upgrade NovaCron.",
  },
  NOVA_DWCP_HANDSHAKE: {
    status: 502,
    retryable: false,
    description:
      "The DWCP peer did not complete the handshake: not a DWCP endpoint, no reply in time, or it rejected the session.",
  },
  NOVA_DWCP_VERSION: {
    status: 502,
    retryable: false,
    description: "The DWCP peers share no protocol version (each side's supported range is in details).",
  },
  NOVA_DWCP_PROTOCOL: {
    status: 502,
    retryable: false,
    description:
      "A DWCP peer sent a malformed, oversized, unexpected or out-of-window frame; the session was ended.",
  },
  NOVA_DWCP_INTEGRITY: {
    status: 502,
    retryable: true,
    description:
      "Transferred data failed verification (channel digest or page hash mismatch); nothing was accepted.",
  },
  NOVA_DWCP_CONNECTION: {
    status: 502,
    retryable: true,
    description: "A DWCP session lost its connections and could not replace them in time.",
  },
  NOVA_DWCP_CLOSED: {
    status: 409,
    retryable: false,
    description: "The DWCP session or channel is already closed or aborted.",
  },
  NOVA_DWCP_CACHE: {
    status: 500,
    retryable: false,
    description:
      "The DWCP page cache on disk is unusable (bad header, wrong page size); details name the path.",
  },
  NOVA_DWCP_WORKER: {
    status: 500,
    retryable: true,
    description:
      "An HDE worker thread failed (it crashed, exited or could not start); the page stream it served was failed, not left waiting.",
  },
  NOVA_DWCP_EMULATOR: {
    status: 500,
    retryable: false,
    description: "The WAN link emulator could not be set up (needs root, ip netns and /dev/net/tun).",
  },
  NOVA_EXEC_PLAN: {
    status: 400,
    retryable: false,
    description:
      "The execution plan is invalid: unknown step kind, missing field, unknown VM/host, or a bad secret reference; details name the step.",
  },
  NOVA_EXEC_LEASE_LOST: {
    status: 409,
    retryable: true,
    description:
      "A worker's lease on a job expired or was taken over; its writes were refused (fencing) and another worker retries the job.",
  },
  NOVA_EXEC_MUTEX_BUSY: {
    status: 409,
    retryable: true,
    description:
      "An asset the execution needs is held by another execution; it waits in the queue and retries.",
  },
  NOVA_EXEC_TIMEOUT: {
    status: 504,
    retryable: false,
    description:
      "A step, an execution or an approval ran past its time limit (per SLA class, configurable); details say which limit.",
  },
  NOVA_EXEC_CANCELLED: {
    status: 409,
    retryable: false,
    description: "The execution was cancelled; details say at which step it stopped.",
  },
  NOVA_EXEC_STEP_FAILED: {
    status: 422,
    retryable: false,
    description:
      "A step failed (unexpected HTTP status, non-zero exit of a host command, console check not matched); details carry the step's outcome.",
  },
  NOVA_EXEC_NOT_IDEMPOTENT: {
    status: 409,
    retryable: false,
    description:
      "A step that is not idempotent was interrupted (worker crash); it is not re-run automatically. Check its effect, then retry the execution.",
  },
  NOVA_EXEC_SELF_APPROVAL: {
    status: 403,
    retryable: false,
    description:
      "An execution cannot be approved by the token that submitted it; another approver must do it, or a token granted executions:approve-own.",
  },
  NOVA_SECRET: {
    status: 422,
    retryable: false,
    description:
      "A secret is missing, or the secrets key is missing or wrong (values are AES-256-GCM encrypted with the server's key).",
  },
  NOVA_COMMAND_NOT_ALLOWED: {
    status: 403,
    retryable: false,
    description: "The host command is not in the agent's allowlist (<agent data dir>/host-commands.json).",
  },
  NOVA_QEMU_UNSUPPORTED: {
    status: 422,
    retryable: false,
    description:
      "The host's QEMU is missing or older than 7.2, the oldest NovaCron supports (the agent refuses to start, the server refuses its registration); the message names the version found or the path tried, and how to install a supported one.",
  },
  NOVA_MACHINE_TYPE_UNSUPPORTED: {
    status: 422,
    retryable: false,
    description:
      "The VM's machine type is not offered by the QEMU of the host it would run on (e.g. pc-q35-10.0 on QEMU 7.2); the message names the machine type and both hosts' QEMU versions. Pin an older machine type at create (--machine-type pc-q35-7.2) to keep a VM movable to older hosts.",
  },
  NOVA_INTERNAL: {
    status: 500,
    retryable: false,
    description: "An unexpected error; the server log has the stack.",
  },
  NOVA_IMAGE_DIGEST_MISMATCH: {
    status: 502,
    retryable: false,
    description:
      "An image blob copied from another host or cluster does not have the digest it was offered under; it was refused and nothing of it was kept. details.digest is the offered digest, details.actual what arrived.",
  },
  NOVA_MIGRATION_RELAY: {
    status: 502,
    retryable: true,
    description:
      "The DWCP migration relay could not carry the QEMU stream intact (socket lost, destination cache miss, end-to-end check failed); the source VM keeps running.",
  },
  NOVA_MIGRATION_INSECURE: {
    status: 500,
    retryable: false,
    description:
      "A migration would use QEMU's own transport on a network address, but an agent has neither QEMU TLS credentials nor the plaintext opt-in, or the two agents disagree (one requires TLS, the other offers plaintext); nothing was started.",
  },
  NOVA_FED_RECORD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description:
      "A federation record is larger than the limit (64 KiB of canonical JSON); details name the record, its size and the limit. It is neither published nor accepted.",
  },
  NOVA_FED_TOKEN_INVALID: {
    status: 401,
    retryable: false,
    description:
      "The peering token is malformed or unknown to the cluster that should have made it; make a new one there with: novacron cluster peer token.",
  },
  NOVA_FED_TOKEN_EXPIRED: {
    status: 401,
    retryable: false,
    description: "The peering token has expired; make a new one with: novacron cluster peer token.",
  },
  NOVA_FED_TOKEN_USED: {
    status: 409,
    retryable: false,
    description:
      "The peering token was already used (tokens are one-time); make a new one with: novacron cluster peer token.",
  },
  NOVA_FED_PEER_UNKNOWN: {
    status: 404,
    retryable: false,
    description: "No peer cluster has that name; novacron cluster peer list shows the peers.",
  },
  NOVA_FED_PEER_UNREACHABLE: {
    status: 502,
    retryable: true,
    description:
      "The peer cluster could not be reached (connection refused, timed out, or TLS failed); details.cause says which.",
  },
  NOVA_FED_PROTOCOL: {
    status: 409,
    retryable: false,
    description:
      "The peer speaks an incompatible federation protocol version (both sides' versions are in details), or broke the protocol; upgrade the older cluster.",
  },
  NOVA_FED_NAME_CLASH: {
    status: 409,
    retryable: false,
    description:
      "Two clusters of the federation would have the same name; rename one (novacron server --cluster-name) before peering.",
  },
  NOVA_FED_PEER_EXISTS: {
    status: 409,
    retryable: false,
    description: "The two clusters are already peers (or the token is this cluster's own).",
  },
  NOVA_FED_QUARANTINED: {
    status: 409,
    retryable: false,
    description:
      "The peer is quarantined for misbehaving (novacron cluster peer list shows why); nothing is exchanged with it until an admin lifts the quarantine.",
  },
  NOVA_ACP_PROTOCOL: {
    status: 409,
    retryable: false,
    description:
      "A hand-off message or statement was malformed, badly signed, or contradicted one the same cluster signed before (docs/federation.md §10); a contradiction quarantines the peer.",
  },
  NOVA_ACP_NOT_OWNER: {
    status: 409,
    retryable: false,
    description:
      "This cluster does not own the VM (it was handed to another cluster, at the epoch in details); act on it through its owner.",
  },
  NOVA_ACP_OWNER_UNCERTAIN: {
    status: 409,
    retryable: true,
    description:
      "The VM is in the middle of a hand-off between clusters that has not resolved yet (details.handoff says where it is); wait for it, or see novacron migration show.",
  },
  NOVA_ACP_ABORTED: {
    status: 409,
    retryable: false,
    description: "The hand-off was already called off by its source cluster; start a new migration.",
  },
  NOVA_ALERTS_UNAVAILABLE: {
    status: 502,
    retryable: true,
    description:
      "The server could not read the alerts from the Prometheus at its --prometheus-url (unreachable, refused, too slow, or an answer that is not Prometheus's alerts list). The message says which; check that Prometheus runs there and the flag (and --prometheus-ca).",
  },
  NOVA_PLACEMENT_CONFLICT: {
    status: 422,
    retryable: false,
    description:
      "Placement groups contradict each other: two hard rules share VMs and ask for them together and apart at once (e.g. hard affinity per host and hard anti-affinity per host). The message names both groups and the VMs; remove the VMs from one group or make one rule soft.",
  },
  NOVA_ACP_EXPIRED: {
    status: 504,
    retryable: false,
    description:
      "The destination cluster did not prepare its copy within the hand-off's authorisation window (the source server's --acp-prepare-timeout, default 600 s): the source withdrew the hand-off and the VM runs on where it was. Check the peer (novacron cluster list) and migrate again.",
  },
  NOVA_ACP_FENCED: {
    status: 409,
    retryable: false,
    description:
      "A host refused to start or resume a VM: the fencing token (owner cluster, epoch) it was given is older than the one it holds or names another cluster, so the VM is owned elsewhere or at a newer epoch (the message names both tokens; docs/federation.md §10). Only the VM's current owner may run it.",
  },
} as const satisfies Record<string, ErrorCodeEntry>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;
