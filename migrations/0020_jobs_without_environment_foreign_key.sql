-- jobs.environment loses its foreign key on environments. Every job insert checked it with a key-share lock on
-- the environment's row, and concurrent submits to one environment all lock that same row: each lock after the
-- first creates a new MultiXact and rewrites the row's xmax, so nearly every submit wrote two more WAL records
-- (MultiXact/CREATE_ID and Heap/LOCK) and queued on the one heap page of the environment (docs/operations.md,
-- "Where a submit's time goes"). The reference is kept by the code: the gateway refuses a job whose environment it
-- does not serve (400 unknown_environment) and records every environment it serves before it accepts jobs; rows of
-- environments are never deleted while they have jobs (the scheduler hides them instead; the benchmarks' and tests'
-- clean-up deletes the jobs first). Catalogue only, safe on a live table. Append-only, like the migrations before it.

alter table jobs drop constraint jobs_environment_fkey;
