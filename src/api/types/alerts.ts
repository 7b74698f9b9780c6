/** Wire types of `GET /v1/alerts`: the alerts Prometheus evaluates for this cluster. */
import { type Static, Type } from "@sinclair/typebox";

/** Alert states as Prometheus reports them (inactive alerts are not listed). */
export const ALERT_STATES = ["firing", "pending"] as const;

/** One active alert of a rule, as Prometheus's `/api/v1/alerts` reports it. */
export const Alert = Type.Object({
  name: Type.String({ description: "The rule's alertname label" }),
  state: Type.Union(
    ALERT_STATES.map((s) => Type.Literal(s)),
    { description: "firing: its condition held for the rule's `for`; pending: it holds, not yet that long" },
  ),
  severity: Type.Optional(Type.String({ description: "The severity label (critical, warning, …)" })),
  summary: Type.Optional(Type.String()),
  description: Type.Optional(Type.String()),
  runbook: Type.Optional(
    Type.String({
      description:
        "The runbook_url annotation; for NovaCron's own rules docs/runbooks/<alert>.md, readable at GET /v1/runbooks/<alert>",
    }),
  ),
  runbookName: Type.Optional(
    Type.String({
      description: "Set when the runbook is one this server serves: GET /v1/runbooks/<runbookName>",
    }),
  ),
  labels: Type.Record(Type.String(), Type.String()),
  activeAt: Type.Optional(Type.String({ description: "When its condition first held (RFC 3339)" })),
  value: Type.Optional(Type.String({ description: "The expression's value when last evaluated" })),
});
export type Alert = Static<typeof Alert>;

/** `GET /v1/alerts`. */
export const AlertsResponse = Type.Object({
  configured: Type.Boolean({
    description: "Whether the server was started with --prometheus-url; false: no alerts can be read",
  }),
  source: Type.Optional(Type.String({ description: "The Prometheus read (its URL without credentials)" })),
  fetchedAt: Type.Optional(Type.String({ format: "date-time" })),
  alerts: Type.Array(Alert, { description: "Firing first, then pending; by severity, then name" }),
});
export type AlertsResponse = Static<typeof AlertsResponse>;

/** `GET /v1/runbooks/:name`: one of NovaCron's runbooks (docs/runbooks/<name>.md). */
export const Runbook = Type.Object({
  name: Type.String(),
  markdown: Type.String(),
});
export type Runbook = Static<typeof Runbook>;
