/**
 * The login page: username and password, then — when the server answers that the account
 * has a second factor (NOVA_MFA_REQUIRED) — the authenticator's code or a recovery code.
 */
import { type FormEvent, useState } from "react";
import { ApiError, login } from "../api/client.js";
import { ErrorNote, messageOf } from "../components/feedback.js";

/** The login form; `notice` says why the last login ended, if it did. */
export function LoginPage({ notice }: { notice: string | null }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [needsCode, setNeedsCode] = useState(false);
  const [useRecovery, setUseRecovery] = useState(false);
  const [code, setCode] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const second = !needsCode ? {} : useRecovery ? { recoveryCode: code.trim() } : { totp: code.trim() };
      await login({ username: username.trim(), password, ...second });
    } catch (err) {
      if (err instanceof ApiError && err.code === "NOVA_MFA_REQUIRED") {
        setNeedsCode(true);
        setError(null);
      } else {
        setError(messageOf(err));
        setCode("");
      }
    } finally {
      setBusy(false);
    }
  };
  const startOver = () => {
    setNeedsCode(false);
    setCode("");
    setPassword("");
    setError(null);
  };
  return (
    <main className="login">
      <form onSubmit={submit} className="card" aria-labelledby="login-title">
        <h1 id="login-title">NovaCron console</h1>
        {notice ? <p className="notice">{notice}</p> : null}
        {needsCode ? (
          <>
            <p>
              Logging in as <strong>{username}</strong>: this account has a second factor.
            </p>
            <label htmlFor="login-code">{useRecovery ? "Recovery code" : "Authenticator code"}</label>
            <input
              id="login-code"
              name={useRecovery ? "recovery-code" : "totp"}
              inputMode={useRecovery ? "text" : "numeric"}
              autoComplete="one-time-code"
              value={code}
              onChange={(e) => setCode(e.target.value)}
              maxLength={useRecovery ? 64 : 16}
              required
              // biome-ignore lint/a11y/noAutofocus: the code field is the one thing left to type.
              autoFocus
            />
            <button type="button" className="btn link" onClick={() => setUseRecovery(!useRecovery)}>
              {useRecovery ? "Use the authenticator's code instead" : "Use a recovery code instead"}
            </button>
          </>
        ) : (
          <>
            <label htmlFor="login-username">Username</label>
            <input
              id="login-username"
              name="username"
              autoComplete="username"
              autoCapitalize="none"
              value={username}
              onChange={(e) => setUsername(e.target.value)}
              maxLength={64}
              required
            />
            <label htmlFor="login-password">Password</label>
            <input
              id="login-password"
              name="password"
              type="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              maxLength={1024}
              required
            />
          </>
        )}
        <button type="submit" className="btn primary" disabled={busy}>
          Log in
        </button>
        {needsCode ? (
          <button type="button" className="btn" onClick={startOver}>
            Start over
          </button>
        ) : null}
        <ErrorNote message={error} />
      </form>
    </main>
  );
}
