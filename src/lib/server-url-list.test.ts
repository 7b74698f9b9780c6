import { describe, expect, it } from "vitest";
import { isNovaError } from "./errors.js";
import { parseServerUrlList } from "./server-url-list.js";

const https = { allowHttp: false };
const anyHttp = { allowHttp: true };

describe("the --server list (agents and the CLI)", () => {
  it("takes one URL or several, trimmed, without trailing slashes or repeats", () => {
    expect(parseServerUrlList("https://a:7700/", https)).toEqual(["https://a:7700"]);
    expect(parseServerUrlList(" https://a:7700, https://b:7700/ ,https://a:7700,", https)).toEqual([
      "https://a:7700",
      "https://b:7700",
    ]);
  });

  it("refuses an empty list and names an entry that is not a URL, with NOVA_CONFIG", () => {
    expect(() => parseServerUrlList(" , ", https)).toThrow(/needs the server's URL/);
    for (const bad of ["cp1:7700", "https://cp1:7700,ftp://x", "https://cp1:7700,not a url"]) {
      let err: unknown;
      try {
        parseServerUrlList(bad, anyHttp);
      } catch (e) {
        err = e;
      }
      expect(isNovaError(err, "NOVA_CONFIG"), bad).toBe(true);
    }
    expect(() => parseServerUrlList("https://a:1,ftp://x", anyHttp)).toThrow(/"ftp:\/\/x" is not a URL/);
  });

  it("takes plain http only when allowed (the CLI's in-process test servers)", () => {
    expect(parseServerUrlList("http://a:1", anyHttp)).toEqual(["http://a:1"]);
    expect(() => parseServerUrlList("https://a:7700,http://b:7700", https)).toThrow(
      /"http:\/\/b:7700" is not an https URL/,
    );
  });
});
