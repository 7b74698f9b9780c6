/**
 * The logged-in user's own account: who they are, changing their password, and their TOTP
 * second factor — enrol (a QR code of the otpauth URI to scan, and the secret and URI as
 * text to type or paste into an authenticator app), confirm with a code (the ten recovery codes shown this
 * once), and turn it off with a code.
 */
import { type FormEvent, useState } from "react";
import type { MfaConfirmed, MfaEnrolment } from "../../api/types/users.js";
import { api, refreshLogin, whoAmI } from "../api/client.js";
import { ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { TotpQr } from "../components/totp-qr.js";
import { time } from "../format.js";

/** The account page. */
export function AccountPage() {
  const me = whoAmI();
  if (!me?.session)
    return (
      <>
        <PageHead title="Account" />
        <p>This login is not a user's session: it has no password or second factor of its own.</p>
      </>
    );
  return (
    <>
      <PageHead title="Account" />
      <section className="card" aria-labelledby="acct-who">
        <h2 id="acct-who">{me.principal.name}</h2>
        <dl className="facts">
          <dt>Role</dt>
          <dd>{me.principal.role}</dd>
          <dt>Second factor</dt>
          <dd data-testid="acct-mfa">
            <StateBadge state={me.mfa ?? "off"} />
          </dd>
          <dt>Session ends</dt>
          <dd>{time(me.session.expiresAt)} at the latest, or after a while without use</dd>
        </dl>
      </section>
      <PasswordForm />
      <MfaSection mfa={me.mfa ?? "off"} />
    </>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setDone(false);
    try {
      await api("POST", "/v1/session/password", { currentPassword: current, newPassword: next });
      setCurrent("");
      setNext("");
      setDone(true);
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return (
    <section className="card" aria-labelledby="acct-password">
      <h2 id="acct-password">Change password</h2>
      <form onSubmit={submit} className="form-grid">
        <label htmlFor="acct-current">Current password</label>
        <input
          id="acct-current"
          type="password"
          autoComplete="current-password"
          value={current}
          onChange={(e) => setCurrent(e.target.value)}
          required
        />
        <label htmlFor="acct-new">New password (12 characters or more)</label>
        <input
          id="acct-new"
          type="password"
          autoComplete="new-password"
          value={next}
          onChange={(e) => setNext(e.target.value)}
          minLength={12}
          maxLength={1024}
          required
        />
        <div className="form-actions">
          <button type="submit" className="btn primary">
            Change password
          </button>
        </div>
      </form>
      {done ? (
        <p className="notice" role="status">
          Password changed. Your other sessions have ended.
        </p>
      ) : null}
      <ErrorNote message={error} />
    </section>
  );
}

function MfaSection({ mfa }: { mfa: string }) {
  const [enrolment, setEnrolment] = useState<MfaEnrolment | null>(null);
  const [codes, setCodes] = useState<string[] | null>(null);
  const [code, setCode] = useState("");
  const [useRecovery, setUseRecovery] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = async (fn: () => Promise<void>) => {
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  const begin = () =>
    run(async () => {
      setCodes(null);
      setEnrolment(await api<MfaEnrolment>("POST", "/v1/session/mfa"));
      await refreshLogin();
    });
  const confirm = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const r = await api<MfaConfirmed>("POST", "/v1/session/mfa/confirm", { totp: code.trim() });
      setCode("");
      setEnrolment(null);
      setCodes(r.recoveryCodes);
      await refreshLogin();
    });
  };
  const disable = (e?: FormEvent) => {
    e?.preventDefault();
    void run(async () => {
      const proof = mfa !== "on" ? {} : useRecovery ? { recoveryCode: code.trim() } : { totp: code.trim() };
      await api("POST", "/v1/session/mfa/disable", proof);
      setCode("");
      setEnrolment(null);
      setCodes(null);
      await refreshLogin();
    });
  };
  return (
    <section className="card" aria-labelledby="acct-mfa-title">
      <h2 id="acct-mfa-title">Second factor (TOTP)</h2>
      {codes ? (
        <div className="notice" role="status">
          <p>
            The second factor is on. These are your ten recovery codes, each usable once instead of a code if
            you lose your phone. Keep them somewhere safe now: they are not shown again.
          </p>
          <ol className="codes" aria-label="Recovery codes">
            {codes.map((c) => (
              <li key={c}>{c}</li>
            ))}
          </ol>
        </div>
      ) : null}
      {mfa === "off" ? (
        <>
          <p>
            Logging in asks only for the password. Add an authenticator app (any TOTP app) to ask for a code
            too.
          </p>
          <button type="button" className="btn primary" onClick={() => void begin()}>
            Set up an authenticator
          </button>
        </>
      ) : null}
      {mfa === "pending" ? (
        <>
          {enrolment ? (
            <div>
              <p>
                Add this account to your authenticator app: scan the QR code, type the secret, or paste the
                URI into an app that takes one.
              </p>
              <TotpQr uri={enrolment.uri} account={whoAmI()?.principal.name ?? "this account"} />
              <label htmlFor="acct-secret">Secret</label>
              <input
                id="acct-secret"
                className="secret"
                readOnly
                value={enrolment.secret}
                onFocus={(e) => e.target.select()}
              />
              <label htmlFor="acct-uri">otpauth URI</label>
              <input
                id="acct-uri"
                className="secret"
                readOnly
                value={enrolment.uri}
                onFocus={(e) => e.target.select()}
              />
            </div>
          ) : (
            <p>An enrolment was started but not confirmed. Start again to see a new secret.</p>
          )}
          <form onSubmit={confirm} className="form-row">
            <label htmlFor="acct-confirm-code">Code from the app</label>
            <input
              id="acct-confirm-code"
              inputMode="numeric"
              autoComplete="one-time-code"
              value={code}
              onChange={(e) => setCode(e.target.value)}
              maxLength={16}
              required
            />
            <button type="submit" className="btn primary">
              Confirm
            </button>
            <button type="button" className="btn" onClick={() => void begin()}>
              Start again
            </button>
            <button type="button" className="btn" onClick={() => disable()}>
              Cancel
            </button>
          </form>
        </>
      ) : null}
      {mfa === "on" ? (
        <form onSubmit={disable} className="form-row">
          <label htmlFor="acct-disable-code">{useRecovery ? "Recovery code" : "Current code"}</label>
          <input
            id="acct-disable-code"
            autoComplete="one-time-code"
            value={code}
            onChange={(e) => setCode(e.target.value)}
            maxLength={64}
            required
          />
          <button type="submit" className="btn danger">
            Turn off the second factor
          </button>
          <button type="button" className="btn link" onClick={() => setUseRecovery(!useRecovery)}>
            {useRecovery ? "Use the app's code" : "Use a recovery code"}
          </button>
        </form>
      ) : null}
      <ErrorNote message={error} />
    </section>
  );
}
