/** The one error type a failing migration relay reports (NOVA_MIGRATION_RELAY). */
import { describeError, NovaError } from "../../lib/errors.js";

/** `err` as the relay's error: NovaErrors keep their code, anything else is wrapped. */
export function relayError(err: unknown): NovaError {
  return err instanceof NovaError
    ? err
    : new NovaError("NOVA_MIGRATION_RELAY", `Migration relay failed: ${describeError(err)}`, { cause: err });
}
