/**
 * `--server`'s value for agents and the CLI: one URL, or the URLs of the replicas of one
 * control plane separated by commas, in the order to try them; trailing slashes dropped,
 * repeats removed.
 */
import { NovaError } from "./errors.js";

/**
 * The URLs in `text`; NOVA_CONFIG naming the entry that is not an https URL (or http, when
 * `allowHttp`: the CLI's in-process tests talk to plain HTTP servers).
 */
export function parseServerUrlList(text: string, options: { allowHttp: boolean }): string[] {
  const urls = text
    .split(",")
    .map((u) => u.trim().replace(/\/+$/, ""))
    .filter((u) => u.length > 0);
  if (urls.length === 0)
    throw new NovaError("NOVA_CONFIG", "--server needs the server's URL, e.g. https://server:7700");
  const allowed = options.allowHttp ? ["https:", "http:"] : ["https:"];
  for (const u of urls) {
    let protocol = "";
    try {
      protocol = new URL(u).protocol;
    } catch {
      protocol = "";
    }
    if (!allowed.includes(protocol))
      throw new NovaError(
        "NOVA_CONFIG",
        `--server ${JSON.stringify(u)} is not ${options.allowHttp ? "a" : "an https"} URL: give the server's URL (e.g. https://server:7700), or several replicas' URLs separated by commas`,
      );
  }
  return [...new Set(urls)];
}
