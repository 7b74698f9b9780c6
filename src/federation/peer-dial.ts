/**
 * Dialing a peer's federation listener (docs/federation.md §4): DWCP over TLS trusting
 * only the peer's pinned CA and requiring a server certificate, one channel with the
 * given label, and the hello exchange that checks the answerer is the peer we meant.
 * The ASS link and ACP's client both open their sessions here.
 */
import { FEDERATION_PROTOCOL } from "../api/types/federation.js";
import type { PeerRow } from "../cluster/store/federation.js";
import type { Channel } from "../dwcp/amst/channel.js";
import { dialSession } from "../dwcp/amst/dial.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import { NovaError } from "../lib/errors.js";
import { withDeadline } from "../lib/wait.js";
import { peerIdentityError } from "../security/tls-client.js";
import { FEDERATION_SESSION_TUNING, readHello, send } from "./ass-wire.js";

/** What dialing needs from this cluster. */
export interface DialSelf {
  self: { id: string; name: string };
  /** Where peers reach our own listener (host:port), told in every hello. */
  selfAddress: () => string;
  tls: { certChainPem: string; keyPem: string };
}

/** How long the peer may take to answer the hello. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * Opens a session to `peer` with one channel labelled `label`, hellos exchanged. The
 * caller owns the session (destroy it when done). `onSession` sees the session as soon as
 * it exists, so a caller that stops meanwhile can destroy it.
 */
export async function dialPeer(
  peer: PeerRow,
  me: DialSelf,
  label: string,
  onSession?: (s: DwcpSession) => void,
): Promise<{ session: DwcpSession; channel: Channel }> {
  const session = await dialSession({
    host: peer.fedHost,
    port: peer.fedPort,
    tls: {
      ca: peer.caPem,
      cert: me.tls.certChainPem,
      key: me.tls.keyPem,
      checkServerIdentity: (_host, cert) => peerIdentityError(cert, { role: "server" }),
    },
    versions: [3],
    streams: 1,
    handshakeTimeoutMs: 10_000,
    tuning: FEDERATION_SESSION_TUNING,
  });
  onSession?.(session);
  try {
    const channel = session.openChannel(label);
    await send(channel, {
      type: "hello",
      protocol: FEDERATION_PROTOCOL,
      cluster: me.self.id,
      name: me.self.name,
      federation: me.selfAddress(),
    });
    const hello = await withDeadline(
      readHello(channel),
      HELLO_TIMEOUT_MS,
      () =>
        new NovaError(
          "NOVA_FED_PEER_UNREACHABLE",
          `${peer.name} sent no hello within ${HELLO_TIMEOUT_MS} ms`,
        ),
    );
    if (hello.cluster !== peer.id) {
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        `${peer.fedHost}:${peer.fedPort} is cluster ${hello.cluster}, not ${peer.name} (${peer.id})`,
      );
    }
    return { session, channel };
  } catch (err) {
    session.destroy();
    throw err;
  }
}
