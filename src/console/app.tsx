/** The console's shell: the login gate (restored from the session cookie on load), navigation by permission, the live-stream status, and the page for the path. */
import { useEffect, useReducer, useState } from "react";
import { authState, logout, may, onAuthChange, restoreLogin, whoAmI } from "./api/client.js";
import { onStatus, type StreamStatus, startEvents, stopEvents } from "./api/events.js";
import { AccountPage } from "./pages/account.js";
import { ExecutionDetailPage, ExecutionsPage } from "./pages/executions.js";
import { HostsPage } from "./pages/hosts.js";
import { LoginPage } from "./pages/login.js";
import { MigrationDetailPage, MigrationsPage } from "./pages/migrations.js";
import { OverviewPage } from "./pages/overview.js";
import { RunbookPage } from "./pages/runbook.js";
import { TokensPage } from "./pages/tokens.js";
import { UsersPage } from "./pages/users.js";
import { VmDetailPage } from "./pages/vm-detail.js";
import { VmsPage } from "./pages/vms.js";
import { Link, usePath } from "./router.js";

const NAV = [
  { to: "/", label: "Overview" },
  { to: "/hosts", label: "Hosts" },
  { to: "/vms", label: "VMs" },
  { to: "/migrations", label: "Migrations" },
  { to: "/executions", label: "Executions" },
  { to: "/tokens", label: "Tokens", needs: "tokens:read" },
  { to: "/users", label: "Users", needs: "users:read" },
  { to: "/account", label: "Account" },
] as const;

function page(path: string) {
  const [, first = "", second] = path.split("/").map((s) => decodeURIComponent(s));
  switch (first) {
    case "":
      return <OverviewPage />;
    case "hosts":
      return <HostsPage />;
    case "vms":
      return second ? <VmDetailPage name={second} /> : <VmsPage />;
    case "migrations":
      return second ? <MigrationDetailPage id={second} /> : <MigrationsPage />;
    case "executions":
      return second ? <ExecutionDetailPage id={second} /> : <ExecutionsPage />;
    case "tokens":
      return <TokensPage />;
    case "users":
      return <UsersPage />;
    case "account":
      return <AccountPage />;
    case "runbooks":
      return second ? <RunbookPage name={second} /> : <OverviewPage />;
    default:
      return (
        <p>
          No page here. <Link to="/">Go to the overview</Link>.
        </p>
      );
  }
}

/** The console. */
export function App() {
  const [auth, setAuth] = useState(authState());
  const [notice, setNotice] = useState<string | null>(null);
  const [stream, setStream] = useState<StreamStatus>("connecting");
  // Re-renders on every change of the login, a refresh too (the Account page shows its MFA state).
  const [, bump] = useReducer((n: number) => n + 1, 0);
  const path = usePath();

  useEffect(() => {
    const off = onAuthChange((reason) => {
      bump();
      setAuth(authState());
      setNotice(reason);
    });
    if (authState() === "restoring") void restoreLogin();
    return off;
  }, []);
  useEffect(() => {
    if (auth !== "in") return;
    startEvents();
    const off = onStatus(setStream);
    return () => {
      off();
      stopEvents();
    };
  }, [auth]);

  if (auth === "restoring") return <p className="muted login">Loading…</p>;
  if (auth === "out") return <LoginPage notice={notice} />;
  const me = whoAmI();
  const section = `/${path.split("/")[1] ?? ""}`;
  return (
    <>
      <a href="#main" className="skip">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">NovaCron</span>
        <nav aria-label="Sections">
          <ul>
            {NAV.filter((n) => !("needs" in n) || may(n.needs)).map((n) => (
              <li key={n.to}>
                <Link to={n.to} current={section === n.to}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <span className={`stream stream-${stream}`} role="status" aria-label={`Live updates: ${stream}`}>
          {stream === "live" ? "live" : stream}
        </span>
        <span className="who small" data-testid="who">
          {me?.principal.name}
          {me?.principal.role ? ` (${me.principal.role})` : ""}
        </span>
        <button type="button" className="btn" onClick={() => void logout()}>
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page(path)}
      </main>
    </>
  );
}
