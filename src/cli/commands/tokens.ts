/** `novacron token create|list|revoke`: admin tokens for more people and tools. */
import type { Command } from "commander";
import type { TokenCreated, TokenList } from "../../api/types/tokens.js";
import { NovaError } from "../../lib/errors.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

/** Registers `token`. */
export function registerTokenCommands(program: Command): void {
  const token = program
    .command("token")
    .description("Create, list and revoke API tokens (e.g. for a second approver)");

  token
    .command("create <name>")
    .description("Create an admin token; its secret is printed once")
    .option(
      "--grant <permission>",
      "grant a permission beyond an admin token's (executions:approve-own: may approve its own executions); repeatable",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (name: string, o: { grant: string[] }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const t = await api.post<TokenCreated>("/v1/tokens", {
        name,
        ...(o.grant.length ? { grants: o.grant } : {}),
      });
      if (json) return printJson(t);
      process.stderr.write(
        `Created token ${t.name} (${t.id})${t.grants.length ? ` with ${t.grants.join(", ")}` : ""}. Store it now; it is not shown again:\n`,
      );
      process.stdout.write(`${t.token}\n`);
    });

  token
    .command("list")
    .description("List tokens (never their secrets)")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { tokens } = await api.get<TokenList>("/v1/tokens");
      if (json) return printJson(tokens);
      printTable(
        ["ID", "NAME", "KIND", "GRANTS", "CREATED", "REVOKED"],
        tokens.map((t) => [t.id, t.name, t.kind, t.grants.join(","), t.createdAt, t.revokedAt]),
      );
    });

  token
    .command("revoke <id>")
    .description("Revoke a token (by id, see: novacron token list); the last admin token cannot be revoked")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api } = await apiFor(cmd);
      if (!/^[0-9a-f-]{36}$/i.test(id))
        throw new NovaError("NOVA_BAD_REQUEST", `Token id ${id} is not a UUID (see: novacron token list)`);
      await api.delete(`/v1/tokens/${seg(id)}`);
      process.stdout.write(`Revoked token ${id}\n`);
    });
}
