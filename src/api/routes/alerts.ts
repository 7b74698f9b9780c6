/**
 * Routes: `GET /v1/alerts` (the alerts Prometheus evaluates for this cluster, read from
 * --prometheus-url; the console's overview shows them) and `GET /v1/runbooks[/:name]`
 * (NovaCron's runbooks, docs/runbooks/, which its alert rules point at).
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { type Alert, AlertsResponse, Runbook } from "../../api/types/alerts.js";
import { NovaError } from "../../lib/errors.js";
import type { RouteDeps } from "./deps.js";

/** Where alerts come from: Prometheus's, or none when the server was given no URL. */
export interface AlertReader {
  read(): Promise<AlertsResponse>;
}

/** What the alert routes need beyond the common dependencies. */
export interface AlertRouteDeps extends RouteDeps {
  alerts?: AlertReader;
  /** The runbooks by name (the alert's name), loaded at start. */
  runbooks: ReadonlyMap<string, string>;
}

const RUNBOOK_NAME = /^[A-Za-z][A-Za-z0-9]{0,99}$/;
const RUNBOOK_MAX_BYTES = 64 * 1024;
const RUNBOOKS_MAX = 200;

/** The runbooks shipped with NovaCron: docs/runbooks/<Alert>.md of this checkout. */
export function defaultRunbooksDir(): string {
  return path.resolve(import.meta.dirname, "..", "..", "..", "docs", "runbooks");
}

/** Loads the runbooks in `dir` (none when it is absent); bounded in count and size. */
export async function loadRunbooks(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const file of names.sort()) {
    const name = file.replace(/\.md$/, "");
    if (!file.endsWith(".md") || !RUNBOOK_NAME.test(name) || out.size >= RUNBOOKS_MAX) continue;
    const text = await readFile(path.join(dir, file), "utf8");
    if (Buffer.byteLength(text) <= RUNBOOK_MAX_BYTES) out.set(name, text);
  }
  return out;
}

/** The alert, naming its runbook when it is `docs/runbooks/<name>.md` and served here. */
function withRunbookName(a: Alert, runbooks: ReadonlyMap<string, string>): Alert {
  const name = a.runbook ? /^docs\/runbooks\/([A-Za-z][A-Za-z0-9]*)\.md$/.exec(a.runbook)?.[1] : undefined;
  return name && runbooks.has(name) ? { ...a, runbookName: name } : a;
}

/** Alert and runbook routes. */
export const alertRoutes: FastifyPluginAsyncTypebox<AlertRouteDeps> = async (
  app,
  { guard, alerts, runbooks },
) => {
  app.get(
    "/v1/alerts",
    { schema: { tags: ["alerts"], response: { 200: AlertsResponse } }, onRequest: guard("alerts:read") },
    async () => {
      if (!alerts) return { configured: false, alerts: [] };
      const res = await alerts.read();
      return { ...res, alerts: res.alerts.map((a) => withRunbookName(a, runbooks)) };
    },
  );

  app.get(
    "/v1/runbooks",
    {
      schema: { tags: ["alerts"], response: { 200: Type.Object({ runbooks: Type.Array(Type.String()) }) } },
      onRequest: guard("alerts:read"),
    },
    async () => ({ runbooks: [...runbooks.keys()] }),
  );

  app.get(
    "/v1/runbooks/:name",
    {
      schema: {
        tags: ["alerts"],
        params: Type.Object({ name: Type.String({ maxLength: 100 }) }),
        response: { 200: Runbook },
      },
      onRequest: guard("alerts:read"),
    },
    async (req) => {
      const markdown = runbooks.get(req.params.name);
      if (markdown === undefined)
        throw new NovaError(
          "NOVA_NOT_FOUND",
          `No runbook named ${JSON.stringify(req.params.name)}; GET /v1/runbooks lists them (one per alert of deploy/prometheus/alerts.yml).`,
        );
      return { name: req.params.name, markdown };
    },
  );
};
