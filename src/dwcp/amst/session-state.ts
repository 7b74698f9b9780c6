/**
 * The AMST session state machine (docs/dwcp.md §4, §4.5), held in memory by DwcpSession:
 * the one definition of a session's states and the moves between them. The session
 * changes state only through its guarded `transition(to)`, which refuses any move not
 * listed here with NOVA_ILLEGAL_STATE.
 *
 *   open ──close() or the peer's CLOSE──▶ closing ──both CLOSEs acknowledged──▶ closed
 *    │                                       │
 *    └── protocol error, peer ERROR, all connections lost, close timeout, destroy() ──┴──▶ failed
 *
 * Only `open` accepts new channels and sends; `closing` still delivers, acknowledges and
 * takes replacement connections. `closed` and `failed` are final: the connections are
 * ended and `DwcpSession.closed` has resolved.
 */
import { defineStateMachine } from "../../lib/state-machine.js";

export const SESSION = defineStateMachine({
  name: "dwcp session",
  states: {
    open: "carries channels: opens, sends, delivers and acknowledges",
    closing: "CLOSE sent or received; delivers and acknowledges until both CLOSEs are acknowledged",
    closed: "orderly end: both sides confirmed the close",
    failed: "ended by an error (protocol, the peer's ERROR, connections lost, close timeout, destroy)",
  },
  initial: ["open"],
  transitions: {
    open: ["closing", "failed"],
    closing: ["closed", "failed"],
    closed: [],
    failed: [],
  },
  final: ["closed", "failed"],
});

/** A DWCP session state. */
export type SessionState = (typeof SESSION.list)[number];
