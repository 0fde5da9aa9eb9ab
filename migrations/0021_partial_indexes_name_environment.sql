-- The partial indexes over unfinished, waiting, admitted and finished jobs now also require `environment is not
-- null` (always true: the column is not null), so only a query that names an environment (or says the same) can
-- use them. A statement about one job (`where id = $1 and finished_at is null …`) implied their predicates, so the
-- planner could scan one of them whole instead of probing jobs_pkey, and did so whenever the statistics had last
-- seen it empty: a claim then read every admitted job (33 claims/s instead of 2,000 in `bench db`), and 10,000 ids
-- in `id = any($1)` were each compared with every waiting job (50 s). See docs/operations.md, "Plans that hold
-- without fresh statistics". One transaction: writes to jobs wait while the four indexes are built.
drop index jobs_active;
create index jobs_active on jobs (environment, created_at) where finished_at is null and environment is not null;
drop index jobs_pending;
create index jobs_pending on jobs (environment, priority, owner, created_at, id)
    where admitted_at is null and finished_at is null and environment is not null;
drop index jobs_admitted;
create index jobs_admitted on jobs (environment, owner)
    where admitted_at is not null and finished_at is null and environment is not null;
drop index jobs_finished;
create index jobs_finished on jobs (environment, finished_at) where finished_at is not null and environment is not null;
