/** A runbook of one of NovaCron's alerts (docs/runbooks/<name>.md), as the server serves it. */
import { useEffect, useState } from "react";
import type { Runbook } from "../../api/types/alerts.js";
import { api } from "../api/client.js";
import { messageOf, PageHead } from "../components/feedback.js";
import { Link } from "../router.js";

/** The runbook page. */
export function RunbookPage({ name }: { name: string }) {
  const [book, setBook] = useState<Runbook | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    api<Runbook>("GET", `/v1/runbooks/${encodeURIComponent(name)}`).then(
      (b) => {
        if (!stopped) setBook(b);
      },
      (err: unknown) => {
        if (!stopped) setError(messageOf(err));
      },
    );
    return () => {
      stopped = true;
    };
  }, [name]);
  return (
    <>
      <PageHead title={`Runbook: ${name}`} error={error} loading={!book && !error}>
        <p>
          <Link to="/">Back to the overview</Link>
        </p>
      </PageHead>
      {book ? (
        <article className="card runbook" aria-label={`Runbook for ${name}`}>
          <pre>{book.markdown}</pre>
        </article>
      ) : null}
    </>
  );
}
