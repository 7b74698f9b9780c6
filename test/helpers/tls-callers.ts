/**
 * Calling an in-process server (startServer) as the suites' different principals over its
 * TLS: an API token holder (bearer), a join-token holder registering a host (with a CSR
 * for a fresh key), and a joined host (its client certificate, as an agent heartbeats).
 */
import type { AgentRegisterPost, AgentRegisterResponse } from "../../src/api/types/agent.js";
import { createCsr } from "../../src/security/pki.js";
import { type ClusterFetch, clusterFetch } from "../../src/security/tls-client.js";

/** A joined host's client identity. */
export interface HostCreds {
  hostId: string;
  certPem: string;
  keyPem: string;
}

/** Who calls: a bearer token, or a joined host's certificate. */
export type Caller = string | HostCreds | null;

/** The API over TLS to one server, as any caller. */
export function tlsApi(server: { url: string; caPem: string }) {
  const anonymous = clusterFetch({ caPem: server.caPem }, { role: "server" });
  const asHost = new Map<string, ClusterFetch>();
  const fetchFor = (who: Caller): ClusterFetch => {
    if (who === null || typeof who === "string") return anonymous;
    let f = asHost.get(who.hostId + who.certPem);
    if (!f) {
      f = clusterFetch({ caPem: server.caPem, certPem: who.certPem, keyPem: who.keyPem }, { role: "server" });
      asHost.set(who.hostId + who.certPem, f);
    }
    return f;
  };
  const api = async <T>(method: string, route: string, who: Caller, body?: unknown) => {
    const res = await fetchFor(who)(`${server.url}${route}`, {
      method,
      headers: {
        ...(typeof who === "string" ? { authorization: `Bearer ${who}` } : {}),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  };

  /** Makes a join token for `name` with the admin token. */
  const joinToken = async (admin: string, name: string, replace = false): Promise<string> => {
    const res = await api<{ token: string }>("POST", "/v1/join-tokens", admin, { name, replace });
    if (res.status !== 200) throw new Error(`join token: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.token;
  };

  /** Registers a host as an agent would (join token + CSR); its credentials when it worked. */
  const register = async <E = unknown>(
    token: string | HostCreds,
    body: Omit<AgentRegisterPost, "csr">,
  ): Promise<{ status: number; body: AgentRegisterResponse & E; creds?: HostCreds }> => {
    const { csrPem, keyPem } = await createCsr(body.name);
    const res = await api<AgentRegisterResponse & E>("POST", "/v1/agent/register", token, {
      ...body,
      csr: csrPem,
    });
    return {
      ...res,
      ...(res.status === 200
        ? { creds: { hostId: res.body.hostId, certPem: res.body.certificate, keyPem } }
        : {}),
    };
  };

  return { api, joinToken, register, fetchFor };
}
