/**
 * The string formats the federation's wire schemas use, registered with TypeBox so that
 * `Value.Check` (which, unlike Fastify's Ajv, knows no formats) checks them instead of
 * refusing every value. Imported for its effect by the modules that check peer messages.
 */
import { FormatRegistry } from "@sinclair/typebox";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

if (!FormatRegistry.Has("uuid")) FormatRegistry.Set("uuid", (v) => UUID.test(v));
if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (v) => !Number.isNaN(Date.parse(v)));
