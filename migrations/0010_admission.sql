-- Admission (docs/architecture.md, "Admission and dispatch"): Postgres keeps the backlog of every environment and
-- the scheduler's dispatcher admits jobs from it, in priority and fair-share order, only as far as the
-- environment's maxJobs and the live workers' free slots allow; RabbitMQ then carries admitted jobs only, so a
-- worker never receives a job it may not start. The dispatcher is also the only publisher of job messages: a job
-- row that is admitted, unclaimed and not (recently) dispatched is the durable record that a message is owed, so
-- the outbox table and its relay go. Append-only, like the migrations before it.

-- 0 (default) to 9, higher first; changeable while the job waits (PATCH /v1/jobs/{id}).
alter table jobs add column priority smallint not null default 0 check (priority between 0 and 9);
-- Set once, when the dispatcher admits the job: from then until it finishes the job holds one of its
-- environment's maxJobs slots (hand-overs and retries keep it).
alter table jobs add column admitted_at timestamptz;
-- When a message for the job was last published; null on an admitted job means "publish one now" (set null by
-- hand-over and hand-back). The dispatcher republishes an unclaimed job whose dispatch is older than a threshold.
alter table jobs add column dispatched_at timestamptz;
-- When the current attempt started: a retried attempt's time limit counts from here, not from the first claim.
alter table jobs add column attempt_started_at timestamptz;
-- Times a worker lost its lease while holding the job (it died or was cut off): a job whose attempts keep killing
-- their workers is failed as poison after C2D_POISON_ATTEMPTS of these, whatever path handed it over.
alter table jobs add column lapses integer not null default 0;
-- The submit request's id and trace context, carried on every message the dispatcher publishes for the job.
alter table jobs add column request_id text;
alter table jobs add column traceparent text;

-- Jobs already claimed when this migration runs hold a slot; jobs never claimed wait to be admitted.
update jobs set admitted_at = coalesce(started_at, now()), dispatched_at = now(), attempt_started_at = started_at
where finished_at is null and (attempt > 0 or worker_id is not null);

-- The backlog in dispatch order: the dispatcher walks (priority, owner) groups and takes each group's oldest jobs.
create index jobs_pending on jobs (environment, priority, owner, created_at, id)
    where admitted_at is null and finished_at is null;
-- Admitted, unfinished jobs: counted against maxJobs, and per owner for fair share.
create index jobs_admitted on jobs (environment, owner) where admitted_at is not null and finished_at is null;
-- Jobs a worker holds: its free slots are its slots minus these.
create index jobs_held on jobs (worker_id) where worker_id is not null and finished_at is null;

-- Live workers and their slots, so the dispatcher admits no more than the fleet can start. Each worker refreshes
-- its row with its lease renewals and removes it at graceful shutdown; a row not refreshed for a lease is ignored.
create table workers (
    id            text primary key,
    environments  text[] not null,
    slots         integer not null check (slots > 0),
    executor      text not null,
    started_at    timestamptz not null default now(),
    last_seen     timestamptz not null default now()
);

-- Wakes the dispatchers (LISTEN c2d_dispatch) when a job arrives, a slot frees or a job needs a message again; the
-- payload is the environment. Postgres delivers a notification at commit and folds duplicates within one
-- transaction.
create function jobs_notify_dispatch() returns trigger language plpgsql as $$
begin
    perform pg_notify('c2d_dispatch', new.environment);
    return null;
end;
$$;

create trigger jobs_notify_insert after insert on jobs
    for each row execute function jobs_notify_dispatch();
create trigger jobs_notify_finish after update of finished_at on jobs
    for each row when (old.finished_at is null and new.finished_at is not null)
    execute function jobs_notify_dispatch();
create trigger jobs_notify_redispatch after update of dispatched_at on jobs
    for each row when (new.dispatched_at is null and new.admitted_at is not null and new.finished_at is null)
    execute function jobs_notify_dispatch();

-- Job messages that were written but never confirmed belong to jobs that are now either waiting for admission or
-- admitted and due for a redispatch (above), so nothing in the outbox is still owed.
drop table outbox;
