/** Builds the TypeBox union of a state machine's states, so the wire schema cannot drift from it. */
import { type TLiteral, type TUnion, Type } from "@sinclair/typebox";
import type { StateMachine } from "../../lib/state-machine.js";

/** The union of the machine's states as string literals, described by the machine's name. */
export function stateUnion<S extends string>(machine: StateMachine<S>): TUnion<TLiteral<S>[]> {
  return Type.Union(
    machine.list.map((s) => Type.Literal(s)),
    { description: `A ${machine.name} state (see docs/states.md)` },
  );
}
