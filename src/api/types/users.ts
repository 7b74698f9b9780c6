/**
 * Wire types of users and login sessions: the roles, a user as listed (never a secret),
 * creating and changing users, logging in (`POST /v1/session`), who is logged in
 * (`GET /v1/session`), and enrolling a TOTP second factor. The MFA state union comes from
 * states/user-mfa.ts.
 */
import { type Static, Type } from "@sinclair/typebox";
import { USER_MFA } from "../../states/user-mfa.js";
import { stateUnion } from "./state-schema.js";

/** The roles a user may have (policy/permissions.ts says what each may do). */
export const ROLES = ["admin", "operator", "viewer"] as const;
/** A user's role. */
export type Role = (typeof ROLES)[number];
export const RoleSchema = Type.Union(
  ROLES.map((r) => Type.Literal(r)),
  {
    description: "admin: everything; operator: hosts, images, VMs, migrations, executions; viewer: read only",
  },
);

/** A username: what people type to log in. */
export const Username = Type.String({
  pattern: "^[a-z0-9][a-z0-9._-]{0,63}$",
  description: "1-64 lowercase letters, digits, dots, underscores and dashes; starts with a letter or digit",
});

/** A password as sent (the server checks the length rules: 12-1024 characters). */
const Password = Type.String({ minLength: 1, maxLength: 1024 });

/** A user's MFA state. */
export const UserMfaStateSchema = stateUnion(USER_MFA);

/** A user as listed. */
export const User = Type.Object({
  id: Type.String({ format: "uuid" }),
  username: Type.String(),
  role: RoleSchema,
  mfa: UserMfaStateSchema,
  /** Set while the account is locked out after repeated failed logins. */
  lockedUntil: Type.Union([Type.String(), Type.Null()]),
  failedAttempts: Type.Integer(),
  lastLoginAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  passwordChangedAt: Type.String(),
});
export type User = Static<typeof User>;

/** `POST /v1/users`: without `password` the server generates one and returns it once. */
export const UsersPost = Type.Object(
  { username: Username, role: RoleSchema, password: Type.Optional(Password) },
  { additionalProperties: false },
);
export type UsersPost = Static<typeof UsersPost>;

/** The reply to creating a user or resetting a password: the user, and the generated password, shown this once. */
export const UserWithPassword = Type.Object({
  user: User,
  password: Type.Optional(Type.String({ description: "The generated initial password; shown once" })),
});
export type UserWithPassword = Static<typeof UserWithPassword>;

/** `GET /v1/users`. */
export const UserList = Type.Object({ users: Type.Array(User) });
export type UserList = Static<typeof UserList>;

/** `PUT /v1/users/{name}/role`. */
export const UserRolePut = Type.Object({ role: RoleSchema }, { additionalProperties: false });
export type UserRolePut = Static<typeof UserRolePut>;

/** `POST /v1/users/{name}/password`: without `password` the server generates one. */
export const UserPasswordPost = Type.Object(
  { password: Type.Optional(Password) },
  { additionalProperties: false },
);
export type UserPasswordPost = Static<typeof UserPasswordPost>;

/** `POST /v1/session`: log in. */
export const SessionPost = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 64 }),
    password: Password,
    totp: Type.Optional(
      Type.String({ maxLength: 16, description: "The authenticator app's current 6-digit code" }),
    ),
    recoveryCode: Type.Optional(
      Type.String({ maxLength: 64, description: "One unused recovery code, instead of totp" }),
    ),
    delivery: Type.Optional(
      Type.Union([Type.Literal("cookie"), Type.Literal("token")], {
        description:
          "cookie (default): the session is set as the __Host-novacron_session cookie, for browsers; token: returned as a bearer token in the body, for the CLI (no cookie, no CSRF)",
      }),
    ),
  },
  { additionalProperties: false },
);
export type SessionPost = Static<typeof SessionPost>;

/** Who is calling and what they may do (`GET /v1/session`, and the reply to logging in). */
export const SessionInfo = Type.Object({
  principal: Type.Object({
    kind: Type.String({ description: "user, admin (an admin API token)" }),
    id: Type.String(),
    name: Type.String(),
    role: Type.Optional(RoleSchema),
  }),
  permissions: Type.Array(Type.String()),
  mfa: Type.Optional(UserMfaStateSchema),
  session: Type.Optional(
    Type.Object({
      id: Type.String({ format: "uuid" }),
      createdAt: Type.String(),
      /** When it ends if used on: its absolute lifetime. */
      expiresAt: Type.String(),
      /** When it ends if not used before then (idle timeout). */
      idleExpiresAt: Type.String(),
      /** Send this in X-CSRF-Token with every state-changing request authenticated by the cookie. */
      csrfToken: Type.String(),
    }),
  ),
  /** The session's bearer token: only in the reply to a login with delivery "token". */
  token: Type.Optional(Type.String()),
});
export type SessionInfo = Static<typeof SessionInfo>;

/** The reply to starting a TOTP enrolment: the secret and the URI to scan. */
export const MfaEnrolment = Type.Object({
  secret: Type.String({ description: "Base32 TOTP secret (SHA-1, 6 digits, 30 s)" }),
  uri: Type.String({ description: "otpauth:// URI for an authenticator app (show it as a QR code)" }),
});
export type MfaEnrolment = Static<typeof MfaEnrolment>;

/** A second-factor proof: a current TOTP code or an unused recovery code. */
export const MfaProof = Type.Object(
  {
    totp: Type.Optional(Type.String({ maxLength: 16 })),
    recoveryCode: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type MfaProof = Static<typeof MfaProof>;

/** `POST /v1/session/mfa/confirm`. */
export const MfaConfirmPost = Type.Object(
  { totp: Type.String({ maxLength: 16 }) },
  { additionalProperties: false },
);
export type MfaConfirmPost = Static<typeof MfaConfirmPost>;

/** The reply to confirming an enrolment: the recovery codes, shown this once. */
export const MfaConfirmed = Type.Object({
  mfa: UserMfaStateSchema,
  recoveryCodes: Type.Array(Type.String(), { description: "Ten single-use codes; shown once" }),
});
export type MfaConfirmed = Static<typeof MfaConfirmed>;

/** `POST /v1/session/password`: change one's own password. */
export const SessionPasswordPost = Type.Object(
  { currentPassword: Password, newPassword: Password },
  { additionalProperties: false },
);
export type SessionPasswordPost = Static<typeof SessionPasswordPost>;
