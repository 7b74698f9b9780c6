/** API tokens, for scripts and the CLI: list, create (the secret shown once), revoke. */
import { type FormEvent, useState } from "react";
import type { Token, TokenCreated } from "../../api/types/tokens.js";
import { api } from "../api/client.js";
import { ActionButton, ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { time } from "../format.js";
import { useLive } from "../live.js";

/** The tokens page. */
export function TokensPage() {
  const live = useLive(() => api<{ tokens: Token[] }>("GET", "/v1/tokens"), ["token."]);
  const [name, setName] = useState("");
  const [approveOwn, setApproveOwn] = useState(false);
  const [created, setCreated] = useState<TokenCreated | null>(null);
  const [error, setError] = useState<string | null>(null);
  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      setCreated(
        await api<TokenCreated>("POST", "/v1/tokens", {
          name: name.trim(),
          ...(approveOwn ? { grants: ["executions:approve-own"] } : {}),
        }),
      );
      setName("");
      live.reload();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  const tokens = (live.data?.tokens ?? []).filter((t) => t.kind === "admin");
  return (
    <>
      <PageHead title="API tokens" error={live.error} loading={!live.data && !live.error} />
      <section className="card" aria-labelledby="token-create">
        <h2 id="token-create">Create a token</h2>
        <form onSubmit={create} className="form-row">
          <label htmlFor="token-name">Name</label>
          <input
            id="token-name"
            value={name}
            onChange={(e) => setName(e.target.value)}
            required
            maxLength={100}
          />
          <label className="inline">
            <input type="checkbox" checked={approveOwn} onChange={(e) => setApproveOwn(e.target.checked)} />{" "}
            may approve its own executions
          </label>
          <button type="submit" className="btn primary">
            Create
          </button>
        </form>
        {created ? (
          <div className="notice" role="status">
            <p>
              Token <strong>{created.name}</strong> made. Copy it now: it is not shown again.
            </p>
            <label htmlFor="token-secret">Secret</label>
            <input id="token-secret" readOnly value={created.token} onFocus={(e) => e.target.select()} />
          </div>
        ) : null}
        <ErrorNote message={error} />
      </section>
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Grants</th>
              <th scope="col">Created</th>
              <th scope="col">State</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.name}</th>
                <td data-label="Grants">{t.grants.join(", ") || "—"}</td>
                <td data-label="Created">{time(t.createdAt)}</td>
                <td data-label="State">
                  <StateBadge state={t.revokedAt ? "revoked" : "active"} />
                </td>
                <td data-label="Actions">
                  {t.revokedAt ? null : (
                    <ActionButton
                      label={`Revoke token ${t.name}`}
                      kind="danger"
                      action={() => api("DELETE", `/v1/tokens/${t.id}`).then(live.reload)}
                      onError={setError}
                    >
                      Revoke
                    </ActionButton>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
