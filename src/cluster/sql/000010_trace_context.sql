-- The trace a migration or an execution belongs to (docs/tracing.md):
-- the W3C traceparent of the request that created it, so that its run — later, maybe in
-- another server process after a restart — continues that trace. NULL when the request
-- was not traced. A traceparent is 55 characters; the CHECK bounds what a caller sends.
ALTER TABLE migrations ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 128);
ALTER TABLE executions ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 128);
