/** The login page: an API token today (users and passwords come with sessions). */
import { type FormEvent, useState } from "react";
import { login } from "../api/client.js";
import { ErrorNote, messageOf } from "../components/feedback.js";

/** The login form; `notice` says why the last login ended, if it did. */
export function LoginPage({ notice }: { notice: string | null }) {
  const [secret, setSecret] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(secret);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login">
      <form onSubmit={submit} className="card" aria-labelledby="login-title">
        <h1 id="login-title">NovaCron console</h1>
        {notice ? <p className="notice">{notice}</p> : null}
        <label htmlFor="login-token">API token</label>
        <input
          id="login-token"
          name="token"
          type="password"
          autoComplete="off"
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
          required
        />
        <p className="muted small">
          An admin token: <code>novacron token create NAME</code>, or the server's <code>admin.token</code>.
          It is kept in this tab only.
        </p>
        <button type="submit" className="btn primary" disabled={busy}>
          Log in
        </button>
        <ErrorNote message={error} />
      </form>
    </main>
  );
}
