/**
 * Log masking: every execution log line, step result, error and event passes through a
 * Masker before it is stored or sent. It hides the values of the secrets an execution
 * resolved — also when they are split across lines, spaced out, split into quoted parts or
 * reversed, base64-encoded (at any alignment,
 * e.g. inside a Basic auth header), URL-encoded, hex-encoded or JSON-escaped — and
 * anything that looks like a credential (bearer tokens, NovaCron tokens, password=…,
 * private keys, JWTs, passwords in URLs) even when it was never registered.
 *
 * Text that is shortened before it reaches the masker (an HTTP step's response body, a
 * host command's output cut by the agent, which knows no secrets) must be cut with
 * `truncate` (lib/truncate.ts), which marks the cut: the masker then also hides a secret's prefix right
 * before the mark, so a secret cut at the limit does not leak its beginning. Where the
 * masker is at hand, `maskTruncated` masks the whole text first and then cuts it.
 */
import { TRUNCATED, truncate } from "../lib/truncate.js";

/** What replaces a masked value. */
export const MASK = "***";

// Shorter secrets would mask ordinary words; they are refused when set (secrets.ts).
const MIN_SECRET_LENGTH = 4;
// Encoded fragments shorter than this are too likely to occur by chance.
const MIN_FRAGMENT = 6;
// What may stand between two characters of a secret that is still the secret: line
// breaks, spaces, and the joiners of a spaced-out or concatenated copy.
const SEPARATORS = "[\\s\"'`+,|._:-]{0,5}";

const PATTERNS: RegExp[] = [
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
  /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /\bnv[ajh]_[A-Za-z0-9_-]{16,}/g,
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g,
  /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g,
  /\b(gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,})/g,
  // key=value and "key": "value" where the key names a credential.
  /((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|authorization)["']?\s*[:=]\s*["']?)([^\s"'&,;}]+)/gi,
  // user:password@ in URLs.
  /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)([^\s@/]+)(@)/gi,
];

/** The forms a secret takes in text other than itself: URL, JSON, hex and base64 at any alignment. */
function encodings(value: string): string[] {
  const buf = Buffer.from(value, "utf8");
  return [
    encodeURIComponent(value),
    JSON.stringify(value).slice(1, -1),
    buf.toString("hex"),
    ...base64Fragments(buf, false),
    ...base64Fragments(buf, true),
  ].filter((enc) => enc !== value);
}

/** A pattern matching every prefix of `literal` at least `min` characters long. */
function prefixPattern(literal: string, min: number): string {
  const chars = [...literal].map(escapeRegExp);
  if (chars.length < min) return "";
  let tail = "";
  for (let i = chars.length - 1; i >= min; i--) tail = `(?:${chars[i]}${tail})?`;
  return `${chars.slice(0, min).join("")}${tail}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** The verbatim base64 fragments a value leaves in any base64 text that contains it. */
function base64Fragments(value: Buffer, urlSafe: boolean): string[] {
  const out: string[] = [];
  // Whatever precedes the value, its bytes start at offset 0, 1 or 2 of a 3-byte group;
  // from the first whole group on, the encoding of the value's bytes is fixed.
  for (let skip = 0; skip < 3; skip++) {
    const rest = value.subarray(skip);
    const whole = rest.subarray(0, rest.length - (rest.length % 3));
    if (whole.length === 0) continue;
    const enc = whole.toString(urlSafe ? "base64url" : "base64");
    if (enc.length >= MIN_FRAGMENT) out.push(enc);
  }
  return out;
}

/** Masks known secret values and credential-looking text. */
export class Masker {
  private readonly values = new Set<string>();
  private compiled: RegExp | undefined;
  private compiledCut: RegExp | undefined;

  constructor(secrets: Iterable<string> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Registers a secret value to hide from now on. */
  add(value: string): void {
    if (value.length < MIN_SECRET_LENGTH || this.values.has(value)) return;
    this.values.add(value);
    this.compiled = undefined;
    this.compiledCut = undefined;
  }

  /** How many secret values it knows. */
  get size(): number {
    return this.values.size;
  }

  private regex(): RegExp | undefined {
    if (this.values.size === 0) return undefined;
    if (this.compiled) return this.compiled;
    const alternatives = new Set<string>();
    for (const v of this.values) {
      // The value, and the value reversed, with a few separators allowed between any two
      // characters: catches a secret wrapped or split across log lines, spaced out
      // ("h u n t"), dashed, or split into quoted parts ("hun" + "ter").
      const chars = [...v].map(escapeRegExp);
      alternatives.add(chars.join(SEPARATORS));
      if (v.length >= MIN_FRAGMENT) alternatives.add([...chars].reverse().join(SEPARATORS));
      for (const enc of encodings(v)) if (enc.length >= MIN_FRAGMENT) alternatives.add(escapeRegExp(enc));
    }
    // Longest first, so a value is masked whole rather than by a shorter fragment.
    const sorted = [...alternatives].sort((a, b) => b.length - a.length);
    this.compiled = new RegExp(sorted.join("|"), "gi");
    return this.compiled;
  }

  /** Any prefix of a secret (or of its encodings) right before a TRUNCATED mark. */
  private cutRegex(): RegExp | undefined {
    if (this.values.size === 0) return undefined;
    if (this.compiledCut) return this.compiledCut;
    const prefixes = new Set<string>();
    for (const v of this.values) {
      // Even one leaked character of the value itself is too many; the encodings'
      // first characters are too common to mask alone.
      prefixes.add(prefixPattern(v, 1));
      for (const enc of encodings(v)) prefixes.add(prefixPattern(enc, 3));
    }
    prefixes.delete("");
    const sorted = [...prefixes].sort((a, b) => b.length - a.length);
    this.compiledCut = new RegExp(`(?:${sorted.join("|")})(?=${escapeRegExp(TRUNCATED)})`, "gi");
    return this.compiledCut;
  }

  /** Masks `text` whole, then cuts it to `limit` characters (marking the cut). */
  maskTruncated(text: string, limit: number): string {
    return truncate(this.mask(text), limit);
  }

  /** Masks one string (a log line, a body, a message). */
  mask(text: string): string {
    let out = text;
    const re = this.regex();
    if (re) out = out.replace(re, MASK);
    if (out.includes(TRUNCATED)) {
      const cut = this.cutRegex();
      if (cut) out = out.replace(cut, MASK);
    }
    for (const p of PATTERNS) {
      out = out.replace(p, (match, ...groups: unknown[]) => {
        // Patterns with a key/prefix group keep it: "password=***", "https://u:***@".
        const g = groups.filter((x): x is string => typeof x === "string");
        if (p.source.startsWith("((?:password") && g[0] !== undefined) return `${g[0]}${MASK}`;
        if (p.source.startsWith("(\\b[a-z]") && g[0] !== undefined) return `${g[0]}${MASK}@`;
        if (g[0] !== undefined && /^(Bearer|Basic|Token)$/i.test(g[0])) return `${g[0]} ${MASK}`;
        return match.length > 0 ? MASK : match;
      });
    }
    return out;
  }

  /** Masks every string inside a JSON-like value (keys stay, values are masked). */
  maskValue<T>(value: T): T {
    if (typeof value === "string") return this.mask(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.maskValue(v)) as T;
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        out[k] =
          /^(password|passwd|secret|token|authorization|api[_-]?key)$/i.test(k) && typeof v === "string"
            ? MASK
            : this.maskValue(v);
      }
      return out as T;
    }
    return value;
  }
}
