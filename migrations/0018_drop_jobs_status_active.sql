-- c2d:no-transaction
-- jobs_status_active (status, created_at, id) where unfinished was written on every submit and read by no query:
-- nothing orders or filters unfinished jobs by status first (the metrics count groups the few unfinished rows that
-- jobs_active finds). Dropped concurrently, so a live table keeps taking submits; `if exists`, so running it again
-- after a crash before its bookkeeping row is harmless (docs/operations.md, "Submit and store costs").
drop index concurrently if exists jobs_status_active;
