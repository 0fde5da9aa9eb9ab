-- ocean-node's compute API (docs/ocean-node.md): a job started through /api/services carries what ocean-node keeps
-- about it besides the workflow (the tier, the filled-in resources, maxJobDuration, queueMaxWaitTime, metadata,
-- payment), and free jobs are capped by their environment's free.maxJobs on top of its maxJobs. Both columns are
-- added with constant defaults (no table rewrite); append-only, like the migrations before it.

-- Whether the job runs in its environment's free tier: the dispatcher admits no more of these at once than
-- free.maxJobs of the environment's definition allows.
alter table jobs add column free_tier boolean not null default false;
-- ocean-node's fields of a job started through its API (null for every other job); the gateway reads and writes
-- them, nothing else interprets them.
alter table jobs add column ocean_node jsonb;

-- Admitted, unfinished free jobs per environment: counted against free.maxJobs at each dispatch pass.
create index jobs_admitted_free on jobs (environment) where free_tier and admitted_at is not null and finished_at is null;
