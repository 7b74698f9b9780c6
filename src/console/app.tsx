/** The console's shell: login gate, navigation, the live-stream status, and the page for the path. */
import { useEffect, useState } from "react";
import { isLoggedIn, logout, onAuthChange } from "./api/client.js";
import { onStatus, type StreamStatus, startEvents, stopEvents } from "./api/events.js";
import { ExecutionDetailPage, ExecutionsPage } from "./pages/executions.js";
import { HostsPage } from "./pages/hosts.js";
import { LoginPage } from "./pages/login.js";
import { MigrationDetailPage, MigrationsPage } from "./pages/migrations.js";
import { OverviewPage } from "./pages/overview.js";
import { TokensPage } from "./pages/tokens.js";
import { VmDetailPage } from "./pages/vm-detail.js";
import { VmsPage } from "./pages/vms.js";
import { Link, usePath } from "./router.js";

const NAV = [
  { to: "/", label: "Overview" },
  { to: "/hosts", label: "Hosts" },
  { to: "/vms", label: "VMs" },
  { to: "/migrations", label: "Migrations" },
  { to: "/executions", label: "Executions" },
  { to: "/tokens", label: "Tokens" },
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
  const [loggedIn, setLoggedIn] = useState(isLoggedIn());
  const [notice, setNotice] = useState<string | null>(null);
  const [stream, setStream] = useState<StreamStatus>("connecting");
  const path = usePath();

  useEffect(
    () =>
      onAuthChange((reason) => {
        setLoggedIn(isLoggedIn());
        setNotice(reason);
      }),
    [],
  );
  useEffect(() => {
    if (!loggedIn) return;
    startEvents();
    const off = onStatus(setStream);
    return () => {
      off();
      stopEvents();
    };
  }, [loggedIn]);

  if (!loggedIn) return <LoginPage notice={notice} />;
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
            {NAV.map((n) => (
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
        <button type="button" className="btn" onClick={() => logout()}>
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page(path)}
      </main>
    </>
  );
}
