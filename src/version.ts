/** NovaCron's version, reported by the API, agents and the CLI. */
export const VERSION = "0.1.0";
