/**
 * One definition per state machine. A machine names its states (each with a one-line
 * meaning), where it starts, which moves are legal and where it rests; everything else
 * (TypeBox unions, the SQL CHECK lists, the docs tables, the transition guards in the
 * stores) is derived from that definition or checked against it by a test
 * (test/state-machines.test.ts), so adding a state is a change in one place plus the
 * code that handles it.
 *
 * "Final" means nothing moves the machine on its own any more; a final state may still
 * have an outgoing edge that only an operator takes (an execution in the dead-letter
 * queue can be retried), and the definition says so by listing that edge.
 */
import { NovaError } from "./errors.js";

/** What a machine's author writes. */
export interface StateMachineDefinition<S extends string> {
  /** What the machine is about, e.g. "migration"; used in errors and docs. */
  readonly name: string;
  /** Every state with a one-line meaning, in the order docs list them. */
  readonly states: { readonly [K in S]: string };
  /** The states a new record may be created in. */
  readonly initial: readonly S[];
  /** from → the states it may move to. A self-edge is listed only when it is a real move. */
  readonly transitions: { readonly [K in S]: readonly S[] };
  /** The states where the machine rests until an outside action (or for good). */
  readonly final: readonly S[];
}

/** A checked state machine with the helpers derived from its definition. */
export interface StateMachine<S extends string> extends StateMachineDefinition<S> {
  /** Every state, in definition order. */
  readonly list: readonly S[];
  /** The states that are not final. */
  readonly active: readonly S[];
  /** True when `value` names one of the states. */
  is(value: string): value is S;
  /** True when `from → to` is a listed transition. */
  can(from: S, to: S): boolean;
  /** True for a final state. */
  isFinal(state: S): boolean;
  /**
   * Throws NOVA_ILLEGAL_STATE unless `from → to` is listed; `subject` names the record
   * (e.g. "migration 1f…") so the message says which one.
   */
  assertTransition(subject: string, from: S, to: S): void;
}

/**
 * Checks a definition (every transition names known states, every non-final state can
 * reach a final one) and returns the machine. Throws at module load on a bad definition,
 * so a broken table never reaches a running process.
 */
export function defineStateMachine<const S extends string>(def: StateMachineDefinition<S>): StateMachine<S> {
  const list = Object.keys(def.states) as S[];
  const known = new Set<string>(list);
  const problems: string[] = [];
  for (const s of Object.keys(def.transitions)) {
    if (!known.has(s)) problems.push(`transitions lists unknown state ${s}`);
  }
  for (const s of list) {
    const next = def.transitions[s];
    if (!next) problems.push(`state ${s} has no transitions entry (use [] for none)`);
    for (const t of next ?? []) if (!known.has(t)) problems.push(`${s} → ${t}: unknown target`);
  }
  for (const s of [...def.initial, ...def.final]) if (!known.has(s)) problems.push(`unknown state ${s}`);
  if (def.initial.length === 0) problems.push("no initial state");
  const finals = new Set<string>(def.final);
  for (const s of list) {
    if (finals.has(s)) continue;
    if (!reaches(def.transitions, s, finals)) problems.push(`${s} cannot reach a final state`);
  }
  if (problems.length > 0) {
    throw new Error(`State machine ${def.name} is ill-defined: ${problems.join("; ")}`);
  }
  const machine: StateMachine<S> = {
    ...def,
    list,
    active: list.filter((s) => !finals.has(s)),
    is: (value: string): value is S => known.has(value),
    can: (from, to) => def.transitions[from]?.includes(to) ?? false,
    isFinal: (state) => finals.has(state),
    assertTransition(subject, from, to) {
      if (machine.can(from, to)) return;
      const allowed = def.transitions[from] ?? [];
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        `Cannot move ${subject} from ${from} to ${to}: ${from} (${def.states[from]}) allows ${allowed.length > 0 ? allowed.join(", ") : "no further move"}.`,
        { details: { machine: def.name, subject, from, to, allowedNext: allowed } },
      );
    },
  };
  return machine;
}

function reaches<S extends string>(
  transitions: { readonly [K in S]: readonly S[] },
  start: S,
  targets: Set<string>,
): boolean {
  const seen = new Set<S>([start]);
  const todo: S[] = [start];
  while (todo.length > 0) {
    const s = todo.pop() as S;
    for (const t of transitions[s] ?? []) {
      if (targets.has(t)) return true;
      if (!seen.has(t)) {
        seen.add(t);
        todo.push(t);
      }
    }
  }
  return false;
}

/**
 * Throws NOVA_STATE_CHANGED for a compare-and-set transition that matched no row: another
 * writer moved the record first (or it is gone), so the caller's view is stale.
 */
export function stateChanged(machine: string, subject: string, from: string, to: string): NovaError {
  return new NovaError(
    "NOVA_STATE_CHANGED",
    `Cannot move ${subject} from ${from} to ${to}: it is no longer ${from} (another writer changed it first, or it is gone). Read it again and retry.`,
    { details: { machine, subject, from, to } },
  );
}

/** The docs table of a machine: state, meaning, next states, final or not. */
export function stateTableMarkdown<S extends string>(m: StateMachine<S>): string {
  const rows = m.list.map((s) => {
    const next = m.transitions[s].length > 0 ? m.transitions[s].join(", ") : "—";
    const tags = [m.initial.includes(s) ? "initial" : "", m.isFinal(s) ? "final" : ""]
      .filter(Boolean)
      .join(", ");
    return `| \`${s}\` | ${m.states[s]} | ${next} | ${tags} |`;
  });
  return ["| state | meaning | may move to | |", "| --- | --- | --- | --- |", ...rows].join("\n");
}
