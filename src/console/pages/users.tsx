/**
 * Users (admins; the navigation hides it from others and the API refuses them anyway):
 * the list with role, MFA, lock-out and last login; create (the generated password shown
 * once), change role, reset password, unlock, turn MFA off, delete.
 */
import { type FormEvent, useState } from "react";
import type { Role, User, UserList, UserWithPassword } from "../../api/types/users.js";
import { api } from "../api/client.js";
import { ActionButton, ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { time } from "../format.js";
import { useLive } from "../live.js";

const ROLES: readonly Role[] = ["admin", "operator", "viewer"];

/** A password the server generated, shown once. */
interface OneTime {
  username: string;
  password: string;
  why: string;
}

/** The users page. */
export function UsersPage() {
  const live = useLive(() => api<UserList>("GET", "/v1/users"), []);
  const [username, setUsername] = useState("");
  const [role, setRole] = useState<Role>("operator");
  const [oneTime, setOneTime] = useState<OneTime | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [rowError, setRowError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState<string | null>(null);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const made = await api<UserWithPassword>("POST", "/v1/users", { username: username.trim(), role });
      if (made.password) setOneTime({ username: made.user.username, password: made.password, why: "made" });
      setUsername("");
      live.reload();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  const reset = async (u: User) => {
    const r = await api<UserWithPassword>("POST", `/v1/users/${encodeURIComponent(u.username)}/password`, {});
    if (r.password) setOneTime({ username: u.username, password: r.password, why: "given a new password" });
    live.reload();
  };
  const act = (method: string, path: string, body?: unknown) => () =>
    api(method, path, body).then(live.reload);

  return (
    <>
      <PageHead title="Users" error={live.error} loading={!live.data && !live.error} />
      <section className="card" aria-labelledby="user-create">
        <h2 id="user-create">Create a user</h2>
        <form onSubmit={create} className="form-row">
          <label htmlFor="user-name">Username</label>
          <input
            id="user-name"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            maxLength={64}
            autoCapitalize="none"
          />
          <label htmlFor="user-role">Role</label>
          <select id="user-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
          <button type="submit" className="btn primary">
            Create
          </button>
        </form>
        <ErrorNote message={error} />
      </section>
      {oneTime ? (
        <div className="notice" role="status">
          <p>
            User <strong>{oneTime.username}</strong> {oneTime.why}. Give them this password now: it is not
            shown again, and they should change it on their Account page.
          </p>
          <label htmlFor="user-password">One-time password</label>
          <input
            id="user-password"
            readOnly
            value={oneTime.password}
            onFocus={(e) => e.target.select()}
            className="secret"
          />
        </div>
      ) : null}
      <ErrorNote message={rowError} />
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Role</th>
              <th scope="col">MFA</th>
              <th scope="col">Lock</th>
              <th scope="col">Last login</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {(live.data?.users ?? []).map((u) => {
              const path = `/v1/users/${encodeURIComponent(u.username)}`;
              return (
                <tr key={u.id}>
                  <th scope="row">{u.username}</th>
                  <td data-label="Role">
                    <select
                      aria-label={`Role of ${u.username}`}
                      value={u.role}
                      onChange={(e) => {
                        setRowError(null);
                        api("POST", `${path}/role`, { role: e.target.value }).then(live.reload, (err) =>
                          setRowError(messageOf(err)),
                        );
                      }}
                    >
                      {ROLES.map((r) => (
                        <option key={r}>{r}</option>
                      ))}
                    </select>
                  </td>
                  <td data-label="MFA">
                    <StateBadge state={u.mfa} />
                  </td>
                  <td data-label="Lock" data-testid={`lock-${u.username}`}>
                    {u.lockedUntil
                      ? `locked until ${time(u.lockedUntil)}`
                      : u.failedAttempts > 0
                        ? `${u.failedAttempts} failed`
                        : "—"}
                  </td>
                  <td data-label="Last login">{u.lastLoginAt ? time(u.lastLoginAt) : "never"}</td>
                  <td data-label="Actions">
                    <div className="actions">
                      <ActionButton
                        label={`Reset the password of ${u.username}`}
                        action={() => reset(u)}
                        onError={setRowError}
                      >
                        Reset password
                      </ActionButton>
                      {u.lockedUntil || u.failedAttempts > 0 ? (
                        <ActionButton
                          label={`Unlock ${u.username}`}
                          action={act("POST", `${path}/unlock`)}
                          onError={setRowError}
                        >
                          Unlock
                        </ActionButton>
                      ) : null}
                      {u.mfa !== "off" ? (
                        <ActionButton
                          label={`Turn off MFA of ${u.username}`}
                          action={act("DELETE", `${path}/mfa`)}
                          onError={setRowError}
                        >
                          Turn off MFA
                        </ActionButton>
                      ) : null}
                      {confirmDelete === u.username ? (
                        <ActionButton
                          label={`Really delete ${u.username}`}
                          kind="danger"
                          action={() => act("DELETE", path)().then(() => setConfirmDelete(null))}
                          onError={setRowError}
                        />
                      ) : (
                        <button
                          type="button"
                          className="btn danger"
                          aria-label={`Delete ${u.username}…`}
                          onClick={() => setConfirmDelete(u.username)}
                        >
                          Delete…
                        </button>
                      )}
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
