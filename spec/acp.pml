/*
 * ACP, the cross-cluster ownership hand-off of one VM (docs/federation.md §10), as a
 * Promela model that spin checks exhaustively (test/acp-model.test.ts, in npm test).
 *
 * One hand-off of one VM from the source cluster S, owner at epoch e, to the destination D.
 * Epochs are written relative to e: 0 is e, 1 is e+1, 2 is e+2.
 *
 * What is modelled, and why it is enough:
 *
 *  - Durable state: each side's hand-off state (none, or a state of src/states/handoff.ts)
 *    and its view of the VM's (owner, epoch); the highest token S's agent has seen. Every
 *    transition of §10's tables is one atomic step (one database transaction). Every side
 *    effect after it (start, resume or remove a copy, fence S's agent, send a statement) is
 *    a separate later step, enabled for as long as the stored state calls for it: that is
 *    a crash between commit and effect, and the planner redoing the effect after restart.
 *  - Crashes: every decision reads durable state, so a crash of either server loses
 *    nothing the model holds; it only delays effects, which the separate steps cover. The
 *    restart policy that matters, S aborting a hand-off it finds `transferring`, is the
 *    step "S may abort from preparing or transferring at any time".
 *  - The network: one flag per statement kind, set when the statement is first sent and
 *    never cleared. Statements of one hand-off are idempotent and identical when
 *    repeated, so "delivered" is "the receiver reads a set flag": any number of times, in
 *    any order relative to other statements, or never. A delivery that would change
 *    nothing is not offered as a step; it is a stutter.
 *  - Status requests: a `status` request asks for the answerer's newest statement. Here a
 *    sent statement stays deliverable forever, so a status exchange is one more delivery
 *    of a set flag (`pending`/`unknown`: no flag set yet) and needs no message of its own.
 *  - The copies: S's QEMU copy (running, paused, gone) and D's (absent; waiting: paused,
 *    waiting for the stream; holding: paused, holds the whole VM; running; gone). `empty`
 *    and `full` would read better but are Promela keywords. The transfer is one step of
 *    QEMU's; the environment may kill D's copy once, at any time before it runs.
 *  - Fencing: a copy is resumed only with its side's durable (owner, epoch) as token, and
 *    only if that names the side and is not older than the agent's highest token.
 *
 * Properties (the ltl claims at the end; `./pan -a -N <name>` checks one, exhaustively):
 *  safety: never both copies running; a running copy is its own side's by that side's
 *    durable state and no other view claims the VM at the same or a higher epoch; S's copy
 *    never runs while S is released or completed; two views at one epoch name one owner.
 *  not_lost: S's copy running or paused, or D's holding or running, in every state.
 *  agreement: <>[] done, where done is: both sides final, the same (owner, epoch), and
 *    exactly one copy left, running. spin extends a run that stops (no step enabled) by
 *    stuttering its last state, and every infinite run of this finite model either stops
 *    or cycles; so a violation is a stop short of done (a lost or unanswerable statement
 *    the protocol cannot recover from) or a cycle that never reaches it (a livelock). No
 *    fairness is needed for soundness: a sent statement stays deliverable, so a run that
 *    never delivers it while nothing else moves is not an infinite run, and a run that
 *    cycles without it would be reported, not hidden.
 *
 * Mutants (each must be caught, test/acp-model.test.ts): -DBUG_ABORT_AFTER_RELEASE,
 * -DBUG_RECLAIM_ON_TIMEOUT, -DBUG_OWN_EMPTY_COPY, -DBUG_REMOVE_ON_RELEASE,
 * -DBUG_RELEASE_RUNNING, -DBUG_OWNED_BEFORE_RESUME.
 */

/*
 * One list of names: Promela's mtype constants are global, and `aborted` is a state of
 * both sides while D's statements are named after D's states. The subsets below are the
 * model's declaration of each set (test/acp-model.test.ts reads them, one per line, and
 * compares them with src/states/handoff.ts and §10); the Invariants process asserts that
 * every state a side is in and every statement sent belongs to its set.
 */
mtype = {
  none,
  preparing, transferring, released, completed, aborting, aborted, reclaimed,
  prepared, resuming, owned, returned,
  prepare, release, abort,
  running, paused, gone, absent, waiting, holding,
  S, D
};

#define SOURCE_STATE(x) (x == preparing || x == transferring || x == released || x == completed || x == aborting || x == aborted || x == reclaimed)
#define SOURCE_FINAL(x) (x == completed || x == aborted || x == reclaimed)
#define TARGET_STATE(x) (x == prepared || x == resuming || x == owned || x == returned || x == aborted)
#define TARGET_FINAL(x) (x == owned || x == returned || x == aborted)
#define STATEMENT(x) (x == prepare || x == prepared || x == release || x == owned || x == returned || x == abort || x == aborted)

/* Durable at S: the hand-off's state, S's view of the VM, and S's agent's highest token. */
mtype s_state = none;
mtype s_owner = S;
byte s_epoch = 0;
byte s_agent_epoch = 0;

/* Durable at D. Before the hand-off D knows the VM from S's published record: S's, at e. */
mtype d_state = none;
mtype d_owner = S;
byte d_epoch = 0;

mtype s_copy = running;
mtype d_copy = absent;
bool killed = false;

/* Indexed by statement kind; mtype constants are small integers. */
bool sent[32];

inline send(m) {
  assert(STATEMENT(m));
  sent[m] = true
}

/* The agent's check: the token is the side's durable view; it must name the side and not
 * be older than the newest token the agent holds. */
#define S_MAY_RUN (s_owner == S && s_epoch >= s_agent_epoch)
#define D_MAY_RUN (d_owner == D)

active proctype Source() {
end:
  do
  /* The cross-cluster migration is accepted. */
  :: atomic { s_state == none -> s_state = preparing }
  :: atomic { s_state == preparing && !sent[prepare] -> send(prepare) }
  :: atomic { s_state == preparing && sent[prepared] -> s_state = transferring }
  /* Cancel, failure, timeout, a restart mid-transfer, D's refusal (an `aborted` answer to
   * `prepare`): S decides alone, at any time before the release. */
  :: atomic { (s_state == preparing || s_state == transferring) -> s_state = aborting }
#ifdef BUG_ABORT_AFTER_RELEASE
  :: atomic { s_state == released -> s_state = aborting }
#endif
  /* QEMU sent everything and paused S's copy: the one point where ownership moves. */
#ifdef BUG_RELEASE_RUNNING
  :: atomic { s_state == transferring -> s_state = released; s_owner = D; s_epoch = 1 }
#else
  :: atomic { s_state == transferring && s_copy == paused -> s_state = released; s_owner = D; s_epoch = 1 }
#endif
  /* The agent learns the new token before D can hold the release. */
  :: atomic {
       s_state == released && !sent[release] ->
         if :: s_agent_epoch < s_epoch -> s_agent_epoch = s_epoch :: else -> skip fi;
#ifdef BUG_REMOVE_ON_RELEASE
         s_copy = gone;
#endif
         send(release)
     }
  :: atomic { s_state == released && sent[owned] -> s_state = completed }
  :: atomic { s_state == released && sent[returned] -> s_state = reclaimed; s_owner = S; s_epoch = 2 }
#ifdef BUG_RECLAIM_ON_TIMEOUT
  /* The tempting shortcut §10 rules out: D is silent, so S takes the VM back itself. */
  :: atomic { s_state == released -> s_state = reclaimed; s_owner = S; s_epoch = 2 }
#endif
  :: atomic { s_state == aborting && sent[aborted] -> s_state = aborted }
  /* `abort` goes out only once S's copy runs, so D's `aborted` (which moves S on to a
   * state with nothing left to do) cannot overtake the resume. */
  :: atomic {
       s_state == aborting && ((s_copy == paused && S_MAY_RUN) || (s_copy == running && !sent[abort])) ->
         if :: s_copy == paused -> s_copy = running; s_agent_epoch = s_epoch :: else -> skip fi;
         send(abort)
     }
  :: atomic { s_state == completed && s_copy == paused -> s_copy = gone }
  :: atomic { s_state == reclaimed && s_copy == paused && S_MAY_RUN -> s_copy = running; s_agent_epoch = s_epoch }
  od
}

active proctype Destination() {
end:
  do
  /* The VM is recorded `arriving`; its copy starts in a later step. */
  :: atomic { d_state == none && sent[prepare] -> d_state = prepared }
  /* Recorded although never prepared, so that a late `prepare` is refused. */
  :: atomic { d_state == none && sent[abort] -> d_state = aborted }
  /* A repeated `prepare` finds the copy gone and starts it again, empty: this is why
   * `release` asks for a copy that holds the VM and not just for a copy. */
  :: atomic { d_state == prepared && sent[prepare] && d_copy == gone -> d_copy = waiting }
  /* The release commits ownership here; the copy is resumed in a later step and `owned`
   * is signed only once it runs. A copy that dies in between never ran, and S still holds
   * its paused copy (it removes it only on `owned`): D gives the VM back. */
#ifdef BUG_OWN_EMPTY_COPY
  :: atomic { d_state == prepared && sent[release] && (d_copy == holding || d_copy == waiting) -> d_state = resuming; d_owner = D; d_epoch = 1 }
  :: atomic { d_state == prepared && sent[release] && d_copy != holding && d_copy != waiting -> d_state = returned; d_epoch = 2 }
#else
  :: atomic { d_state == prepared && sent[release] && d_copy == holding -> d_state = resuming; d_owner = D; d_epoch = 1 }
  :: atomic { d_state == prepared && sent[release] && d_copy != holding -> d_state = returned; d_epoch = 2 }
#endif
#ifdef BUG_OWNED_BEFORE_RESUME
  /* Answering `owned` on the commit, before the copy runs: S removes its copy on it. */
  :: atomic { d_state == resuming && !sent[owned] -> send(owned) }
#endif
  :: atomic { d_state == resuming && d_copy == holding && D_MAY_RUN -> d_copy = running }
  :: atomic { d_state == resuming && d_copy == running -> d_state = owned; send(owned) }
  :: atomic { d_state == resuming && d_copy == gone -> d_state = returned; d_owner = S; d_epoch = 2 }
  :: atomic { d_state == prepared && sent[abort] -> d_state = aborted }
  /* Each answer goes out after its effect, as the statement says: "I hold a paused
   * copy", "runs here", "my copy is gone", "I hold no copy". */
  :: atomic { d_state == prepared && d_copy == absent -> d_copy = waiting; send(prepared) }
  :: atomic {
       d_state == returned && (d_copy == waiting || d_copy == holding || !sent[returned]) ->
         if :: d_copy == waiting || d_copy == holding -> d_copy = gone :: else -> skip fi;
         send(returned)
     }
  :: atomic {
       d_state == aborted && (d_copy == waiting || d_copy == holding || !sent[aborted]) ->
         if :: d_copy == waiting || d_copy == holding -> d_copy = gone :: else -> skip fi;
         send(aborted)
     }
  od
}

active proctype Environment() {
end:
  do
  /* QEMU's migration: memory and disk cross while S's copy runs, then S's copy pauses
   * holding the VM and D's holds all of it. */
  :: atomic { s_state == transferring && s_copy == running && d_copy == waiting -> s_copy = paused; d_copy = holding }
  /* D's QEMU dies (host crash, OOM) once, at any time before it runs: while prepared,
   * and between D's commit of the release (resuming) and its resume, which D answers by
   * giving the VM back. */
  :: atomic { !killed && (d_copy == waiting || d_copy == holding) -> killed = true; d_copy = gone }
  od
}

/* Blocks until a state breaks a declaration, so it adds no states of its own. */
active proctype Invariants() {
end:
  atomic {
    !((s_state == none || SOURCE_STATE(s_state)) && (d_state == none || TARGET_STATE(d_state))) ->
      assert(s_state == none || SOURCE_STATE(s_state));
      assert(d_state == none || TARGET_STATE(d_state))
  }
}

#define S_RUNS (s_copy == running)
#define D_RUNS (d_copy == running)

ltl safety {
  [] (
    !(S_RUNS && D_RUNS)
    && (S_RUNS -> (s_owner == S && !(d_owner == D && d_epoch >= s_epoch)))
    && (D_RUNS -> (d_owner == D && !(s_owner == S && s_epoch >= d_epoch)))
    && (S_RUNS -> (s_state != released && s_state != completed))
    && (s_epoch == d_epoch -> s_owner == d_owner)
  )
}

ltl not_lost { [] (s_copy == running || s_copy == paused || d_copy == holding || d_copy == running) }

#define S_LEFT (s_copy != gone)
#define D_LEFT (d_copy != gone && d_copy != absent)

ltl agreement {
  <> [] (
    SOURCE_FINAL(s_state) && TARGET_FINAL(d_state)
    && s_owner == d_owner && s_epoch == d_epoch
    && ((S_RUNS && !D_LEFT) || (D_RUNS && !S_LEFT))
  )
}
