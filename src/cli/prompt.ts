/**
 * Reading secrets for the CLI: a password typed at the terminal without echo, or the
 * first line of standard input (`--password-stdin`, for scripts), each bounded in size.
 */
import { NovaError } from "../lib/errors.js";

/** The longest secret read (a password is at most 1024 characters). */
const MAX_SECRET = 4096;

/** The first line of standard input, without its line ending; NOVA_CONFIG when there is none. */
export async function readStdinLine(what: string): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString("utf8");
    if (text.includes("\n") || text.length > MAX_SECRET) break;
  }
  const line = text.split(/\r?\n/)[0] ?? "";
  if (line === "")
    throw new NovaError("NOVA_CONFIG", `Expected the ${what} on standard input; it was empty.`);
  if (line.length > MAX_SECRET)
    throw new NovaError("NOVA_CONFIG", `The ${what} on standard input is too long.`);
  return line;
}

/**
 * Asks for a secret on the terminal without echoing it. Without a terminal it refuses,
 * naming the flag that reads one from standard input instead.
 */
export async function promptSecret(question: string, stdinFlag: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY)
    throw new NovaError("NOVA_CONFIG", `No terminal to ask on: pipe it in with ${stdinFlag} instead.`);
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let secret = "";
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString("utf8")) {
          if (ch === "\r" || ch === "\n") {
            stdin.off("data", onData);
            process.stderr.write("\n");
            return resolve(secret);
          }
          if (ch === "\u0003") {
            stdin.off("data", onData);
            process.stderr.write("\n");
            return reject(new NovaError("NOVA_CONFIG", "Cancelled."));
          }
          if (ch === "\u007f" || ch === "\b") secret = secret.slice(0, -1);
          else if (secret.length < MAX_SECRET) secret += ch;
        }
      };
      stdin.on("data", onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

/** Asks for a line on the terminal (echoed); NOVA_CONFIG without a terminal, naming `flag`. */
export async function promptLine(question: string, flag: string): Promise<string> {
  if (!process.stdin.isTTY)
    throw new NovaError("NOVA_CONFIG", `No terminal to ask on: give ${flag} instead.`);
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}
