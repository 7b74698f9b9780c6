/**
 * A user's TOTP second factor (table `users.mfa_state`, docs/security.md "Users").
 *
 *   off ──enrol──▶ pending ──a code verified──▶ on
 *    ▲               │  ▲ enrol again               │
 *    │               └──┘ (a new secret)            │
 *    └──── disabled (a code or an admin) ◀──────────┘
 *
 * Enrolling issues a secret; it protects logins only once the user proves, with one code,
 * that their authenticator holds it, so a mistyped QR scan never locks anybody out.
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const USER_MFA = defineStateMachine({
  name: "user MFA",
  states: {
    off: "no second factor: the password alone logs in",
    pending: "a TOTP secret was issued; a code from it must be verified before it is required",
    on: "a TOTP code (or an unused recovery code) is required at every login",
  },
  initial: ["off"],
  transitions: {
    off: ["pending"],
    pending: ["pending", "on", "off"],
    on: ["off"],
  },
  final: ["off", "on"],
});

/** A user's MFA state. */
export type UserMfaState = (typeof USER_MFA.list)[number];
