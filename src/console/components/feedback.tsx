/** Shared page parts: an error note, a busy-aware action button, a state badge. */
import { type ReactNode, useState } from "react";
import { ApiError } from "../api/client.js";

/** An error shown where the action was taken; screen readers hear it at once. */
export function ErrorNote({ message }: { message: string | null }) {
  if (!message) return null;
  return (
    <p className="error" role="alert">
      {message}
    </p>
  );
}

/** The message of anything an action threw (the API's own message for a refusal). */
export function messageOf(err: unknown): string {
  return err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
}

/** Runs an async action, disabling itself meanwhile, and reports a refusal through `onError`. */
export function ActionButton(props: {
  label: string;
  children?: ReactNode;
  action: () => Promise<unknown>;
  onError: (message: string | null) => void;
  kind?: "primary" | "danger" | "plain";
  disabled?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      className={`btn ${props.kind ?? "plain"}`}
      aria-label={props.label}
      disabled={busy || props.disabled}
      onClick={async () => {
        setBusy(true);
        props.onError(null);
        try {
          await props.action();
        } catch (err) {
          props.onError(messageOf(err));
        } finally {
          setBusy(false);
        }
      }}
    >
      {props.children ?? props.label}
    </button>
  );
}

/** A state as a coloured word (the word itself carries the meaning, not the colour). */
export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state}</span>;
}

/** A page's heading and loading / error line. */
export function PageHead(props: {
  title: string;
  error?: string | null;
  loading?: boolean;
  children?: ReactNode;
}) {
  return (
    <header className="page-head">
      <h1>{props.title}</h1>
      {props.children}
      {props.loading ? <p className="muted">Loading…</p> : null}
      <ErrorNote message={props.error ?? null} />
    </header>
  );
}
