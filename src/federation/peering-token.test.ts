import { describe, expect, it } from "vitest";
import { formatPeeringToken, parsePeeringToken } from "./peering-token.js";

describe("peering token", () => {
  const t = {
    secret: "s3cr3t-_x",
    caFingerprint: `sha256:${"ab".repeat(32)}`,
    apiUrl: "https://10.0.0.1:7700",
  };

  it("round-trips", () => {
    expect(parsePeeringToken(` ${formatPeeringToken(t)}\n`)).toEqual(t);
  });

  it.each([
    ["garbage", "hello"],
    ["a join token", `nvj1.x.${"ab".repeat(32)}`],
    ["a bad fingerprint", `nvf1.x.abc.${Buffer.from("https://a").toString("base64url")}`],
    ["an http URL", `nvf1.x.${"ab".repeat(32)}.${Buffer.from("http://a:1").toString("base64url")}`],
    ["no URL", `nvf1.x.${"ab".repeat(32)}.${Buffer.from("nope").toString("base64url")}`],
  ])("refuses %s with NOVA_FED_TOKEN_INVALID", (_what, text) => {
    expect(() => parsePeeringToken(text)).toThrow(
      expect.objectContaining({ code: "NOVA_FED_TOKEN_INVALID" }),
    );
  });
});
