// The REST API's handling of bad input, against a real server on PGlite over real HTTP:
// a NUL byte in an id is a 400, not the database's 500; JSON bodies are not type-coerced
// while numeric query strings still are; an oversized body is a 413 and an overlong id a
// 414, both in the error envelope; cancel/approve/reject/retry take a POST with no body;
// a drain's options are checked before anything is looked up.
import { mkdtemp, rm } from "node:fs/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildExecConfig } from "../src/exec/config.js";
import { clusterFetch } from "../src/security/tls-client.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";

interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}
interface Exec {
  id: string;
  state: string;
}

describe("REST API input handling", () => {
  let dir: string;
  let server: RunningServer;
  let admin: string;

  const request = async <T>(
    method: string,
    route: string,
    init: { body?: string; contentType?: string; token?: string } = {},
  ) => {
    const res = await clusterFetch({ caPem: server.caPem }, { role: "server" })(`${server.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${init.token ?? admin}`,
        ...(init.contentType ? { "content-type": init.contentType } : {}),
      },
      body: init.body ?? null,
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, text };
  };
  const json = <T>(method: string, route: string, body: unknown) =>
    request<T>(method, route, { body: JSON.stringify(body), contentType: "application/json" });
  const expectEnvelope = (body: ApiError, code: string) => {
    expect(body.error.code).toBe(code);
    expect(typeof body.error.message).toBe("string");
    expect(body.error.details).toBeTypeOf("object");
  };
  const pendingExecution = async (name: string) => {
    const plan = { name, sla: "fast", approval: "required", steps: [{ kind: "wait", seconds: 0 }] };
    const submitted = await json<Exec>("POST", "/v1/executions", { plan });
    expect(submitted.status).toBe(202);
    expect(submitted.body.state).toBe("pending_approval");
    return submitted.body.id;
  };

  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-api-input-");
    server = await startServer({
      dataDir: dir,
      port: 0,
      execConfig: buildExecConfig({ flags: { workersMin: 1, workersMax: 1 } }),
      logger: pino({ level: "silent" }),
    });
    admin = server.created.admin!;
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    "/v1/vms/a%00b",
    "/v1/hosts/%00",
    "/v1/images/x%00",
    "/v1/executions/e%00",
    "/v1/migrations/m%00",
  ])(
    "refuses a NUL byte in the id of GET %s with 400 NOVA_BAD_REQUEST, not the database's error",
    async (route) => {
      const res = await request<ApiError>("GET", route);
      expect(res.status).toBe(400);
      expectEnvelope(res.body, "NOVA_BAD_REQUEST");
      expect(res.body.error.message).toMatch(/params\.id contains a NUL byte/);
      expect(res.text).not.toMatch(/0x00|invalid byte sequence|UTF8/i);
    },
  );

  it("refuses a NUL byte in a JSON body string with 400", async () => {
    const res = await json<ApiError>("POST", "/v1/vms", { name: "nul", image: "img\u0000" });
    expect(res.status).toBe(400);
    expectEnvelope(res.body, "NOVA_BAD_REQUEST");
  });

  it("does not coerce JSON body types (a number where a string belongs is a 400 naming the field) but still coerces numeric query strings", async () => {
    const res = await json<ApiError>("POST", "/v1/vms", { name: 12345, image: "img" });
    expect(res.status).toBe(400);
    expectEnvelope(res.body, "NOVA_BAD_REQUEST");
    expect(res.body.error.message).toMatch(/body\.name must be string/);
    const token = await json<ApiError>("POST", "/v1/tokens", { name: true });
    expect(token.status).toBe(400);
    expect(token.body.error.message).toMatch(/body\.name must be string/);
    const list = await request<{ tokens?: { name: string }[] }>("GET", "/v1/tokens");
    expect(JSON.stringify(list.body)).not.toMatch(/"name":"true"/);

    // Query strings are still coerced from their text.
    await pendingExecution("coerce-a");
    await pendingExecution("coerce-b");
    const limited = await request<{ executions: Exec[] }>("GET", "/v1/executions?limit=1");
    expect(limited.status).toBe(200);
    expect(limited.body.executions).toHaveLength(1);
    const bad = await request<ApiError>("GET", "/v1/executions?limit=abc");
    expect(bad.status).toBe(400);
    expectEnvelope(bad.body, "NOVA_BAD_REQUEST");
  });

  it("refuses a drain's concurrency outside 1 … 4, a string, or an unknown field with 400, before the host is looked up; no body is fine", async () => {
    for (const [body, field] of [
      [{ concurrency: 5 }, /body\/concurrency|body\.concurrency/],
      [{ concurrency: 0 }, /body\/concurrency|body\.concurrency/],
      [{ concurrency: "2" }, /body\/concurrency|body\.concurrency/],
      [{ concurency: 2 }, /additional/],
    ] as const) {
      const res = await json<ApiError>("POST", "/v1/hosts/no-such-host/drain", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expectEnvelope(res.body, "NOVA_BAD_REQUEST");
      expect(res.body.error.message).toMatch(field);
    }
    const bare = await request<ApiError>("POST", "/v1/hosts/no-such-host/drain");
    expect(bare.status).toBe(404);
    expectEnvelope(bare.body, "NOVA_NOT_FOUND");
  });

  it("answers a body over 1 MiB with 413 NOVA_PAYLOAD_TOO_LARGE in the envelope", async () => {
    const big = JSON.stringify({ name: "big", image: "x".repeat(50 * 1024 * 1024) });
    const res = await request<ApiError>("POST", "/v1/vms", { body: big, contentType: "application/json" });
    expect(res.status).toBe(413);
    expectEnvelope(res.body, "NOVA_PAYLOAD_TOO_LARGE");
    expect(res.body.error.details.limitBytes).toBe(1 << 20);
  });

  it("answers an id over 128 characters with 414 NOVA_URI_TOO_LONG in the envelope; 128 is looked up", async () => {
    const res = await request<ApiError>("GET", `/v1/vms/${"a".repeat(129)}`);
    expect(res.status).toBe(414);
    expectEnvelope(res.body, "NOVA_URI_TOO_LONG");
    const ok = await request<ApiError>("GET", `/v1/vms/${"a".repeat(128)}`);
    expect(ok.status).toBe(404);
    expectEnvelope(ok.body, "NOVA_NOT_FOUND");
  });

  it.each([
    ["no content type", undefined],
    ["application/json with an empty body", "application/json"],
  ])("accepts cancel/approve/reject/retry with no body (%s)", async (_what, contentType) => {
    const init = contentType ? { contentType } : {};
    const toCancel = await pendingExecution(`no-body-cancel-${contentType ?? "none"}`);
    const cancelled = await request<Exec>("POST", `/v1/executions/${toCancel}/cancel`, init);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.state).toBe("cancelled");

    // Approve and reject need a second person: a token made through the API.
    const second = await json<{ token: string }>("POST", "/v1/tokens", {
      name: `second-${contentType ?? "none"}`,
    });
    expect(second.status).toBe(201);
    const toReject = await pendingExecution(`no-body-reject-${contentType ?? "none"}`);
    const rejected = await request<Exec>("POST", `/v1/executions/${toReject}/reject`, {
      ...init,
      token: second.body.token,
    });
    expect(rejected.status).toBe(200);
    expect(rejected.body.state).toBe("rejected");

    const toApprove = await pendingExecution(`no-body-approve-${contentType ?? "none"}`);
    const approved = await request<Exec>("POST", `/v1/executions/${toApprove}/approve`, {
      ...init,
      token: second.body.token,
    });
    expect(approved.status).toBe(200);
    expect(["queued", "running", "completed"]).toContain(approved.body.state);

    // Retry reaches the service, which refuses a cancelled execution by its state, not the body.
    const retried = await request<ApiError>("POST", `/v1/executions/${toCancel}/retry`, init);
    expect(retried.status).toBe(409);
    expectEnvelope(retried.body, "NOVA_ILLEGAL_STATE");
    expect(retried.body.error.message).toMatch(/it is cancelled/);
  });
  it("authenticates before it reads or validates a body: an unauthenticated caller gets 401, never the schema's details", async () => {
    const res = await request<ApiError>("POST", "/v1/vms", {
      body: JSON.stringify({ name: 12345, extra: true }),
      contentType: "application/json",
      token: "nva_wrong",
    });
    expect(res.status).toBe(401);
    expectEnvelope(res.body, "NOVA_UNAUTHENTICATED");
    expect(res.text).not.toContain("name");
  });
});
