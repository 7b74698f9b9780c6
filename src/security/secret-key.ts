/**
 * The server's secrets key: AES-256-GCM under one 32-byte key (NOVACRON_SECRETS_KEY,
 * base64, or `<data-dir>/secrets.key` created 0600 on first start). Execution secrets
 * (exec/secrets.ts) and users' TOTP secrets (cluster/user-service.ts) are stored sealed
 * with it, each bound to what it belongs to (associated data) so sealed values cannot be
 * moved between rows. Replicas of one cluster share the key: set NOVACRON_SECRETS_KEY on
 * each, or copy the file.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { describeError, NovaError } from "../lib/errors.js";

/** The prefix of a sealed text (sealText): base32 TOTP secrets and other plain values never start so. */
const SEALED_TEXT_PREFIX = "v1.";

/** A 32-byte AES key. */
export class SecretKey {
  private constructor(private readonly key: Buffer) {}

  /** From base64 text (32 bytes decoded). */
  static fromBase64(text: string, origin: string): SecretKey {
    const key = Buffer.from(text.trim(), "base64");
    if (key.length !== 32) {
      throw new NovaError(
        "NOVA_SECRET",
        `The secrets key from ${origin} is ${key.length} bytes; it must be 32 bytes, base64-encoded (e.g. openssl rand -base64 32).`,
      );
    }
    return new SecretKey(key);
  }

  /** NOVACRON_SECRETS_KEY when set, else the key file (created 0600 when missing). */
  static async load(keyFile: string, env = process.env): Promise<SecretKey> {
    if (env.NOVACRON_SECRETS_KEY)
      return SecretKey.fromBase64(env.NOVACRON_SECRETS_KEY, "NOVACRON_SECRETS_KEY");
    try {
      return SecretKey.fromBase64(await readFile(keyFile, "utf8"), keyFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const fresh = randomBytes(32).toString("base64");
    try {
      // wx: two servers sharing a data dir must not overwrite each other's key.
      await writeFile(keyFile, `${fresh}\n`, { mode: 0o600, flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST")
        throw new NovaError(
          "NOVA_SECRET",
          `Failed creating the secrets key ${keyFile}: ${describeError(err)}`,
        );
    }
    return SecretKey.fromBase64(await readFile(keyFile, "utf8"), keyFile);
  }

  /** Encrypts; the secret's name is bound as associated data so rows cannot be swapped. */
  seal(name: string, value: string): { iv: string; tag: string; ciphertext: string } {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(name));
    const ciphertext = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return {
      iv: iv.toString("base64"),
      tag: cipher.getAuthTag().toString("base64"),
      ciphertext: ciphertext.toString("base64"),
    };
  }

  /** Decrypts, or throws NOVA_SECRET when the key is wrong or the row was tampered with. */
  open(name: string, row: { iv: string; tag: string; ciphertext: string }): string {
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(row.iv, "base64"));
      decipher.setAAD(Buffer.from(name));
      decipher.setAuthTag(Buffer.from(row.tag, "base64"));
      return Buffer.concat([
        decipher.update(Buffer.from(row.ciphertext, "base64")),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      throw new NovaError(
        "NOVA_SECRET",
        `Secret ${name} cannot be decrypted: the server's secrets key is not the one it was stored with (or the row was altered).`,
        { details: { secret: name } },
      );
    }
  }

  /** `value` sealed as one line of text (`v1.<iv>.<tag>.<ciphertext>`), bound to `boundTo`. */
  sealText(boundTo: string, value: string): string {
    const { iv, tag, ciphertext } = this.seal(boundTo, value);
    return `${SEALED_TEXT_PREFIX}${iv}.${tag}.${ciphertext}`;
  }

  /** The value of a sealText; NOVA_SECRET when the key is another or the text was altered or moved. */
  openText(boundTo: string, sealed: string): string {
    const [iv = "", tag = "", ciphertext = ""] = sealed.slice(SEALED_TEXT_PREFIX.length).split(".");
    return this.open(boundTo, { iv, tag, ciphertext });
  }
}

/** Whether `text` is a sealText (rather than a value stored before sealing). */
export function isSealedText(text: string): boolean {
  return text.startsWith(SEALED_TEXT_PREFIX);
}
