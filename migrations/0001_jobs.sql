-- c2d schema, first version: jobs and what hangs off them, the outbox, environments.
-- Migrations are append-only: never edit this file once it has landed; add 0002_… instead.

-- Every write to a job takes the next value, so the scheduler can read "everything changed since N".
create sequence job_change_seq;

create table environments (
    id          text primary key,
    definition  jsonb not null,
    last_seen   timestamptz not null default now(),
    created_at  timestamptz not null default now()
);

create table jobs (
    id               uuid primary key,
    environment      text not null references environments (id),
    owner            text not null,
    agreement_id     text,
    idempotency_key  text,
    batch_id         uuid,
    status           smallint not null default 1,
    outcome          text check (outcome in ('succeeded', 'failed', 'stopped', 'timed_out')),
    failure_reason   text,
    exit_code        integer,
    oom_killed       boolean not null default false,
    stopreq          smallint not null default 0,
    removed          boolean not null default false,
    attempt          integer not null default 0,
    worker_id        text,
    lease_until      timestamptz,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz not null default now(),
    change_seq       bigint not null default nextval('job_change_seq'),
    workflow         jsonb not null,
    -- a job is terminal exactly when it has an outcome and a finish time
    check ((outcome is null) = (finished_at is null))
);

create unique index jobs_owner_idempotency_key on jobs (owner, idempotency_key) where idempotency_key is not null;
-- The hot set: jobs that are not finished (queue order per environment, lease expiry).
create index jobs_active on jobs (environment, created_at) where finished_at is null;
create index jobs_change_seq on jobs (change_seq);
create index jobs_owner_created on jobs (owner, created_at desc, id desc);
create index jobs_agreement on jobs (agreement_id) where agreement_id is not null;

create function jobs_touch() returns trigger language plpgsql as $$
begin
    new.change_seq := nextval('job_change_seq');
    new.updated_at := now();
    return new;
end;
$$;

create trigger jobs_touch before update on jobs for each row execute function jobs_touch();

-- Every status change of every attempt, in order.
create table job_events (
    id          bigserial primary key,
    job_id      uuid not null references jobs (id) on delete cascade,
    attempt     integer not null,
    status      smallint not null,
    reason      text,
    created_at  timestamptz not null default now()
);

create index job_events_job on job_events (job_id, id);

-- Outputs and logs a job published, in Ocean's result order (position = getResult index).
create table job_results (
    job_id      uuid not null references jobs (id) on delete cascade,
    position    integer not null,
    attempt     integer not null,
    name        text not null,
    kind        text not null,
    size        bigint not null,
    sha256      text not null,
    location    text not null,
    created_at  timestamptz not null default now(),
    primary key (job_id, position)
);

-- Messages written in the same transaction as the job, published after commit; rows the gateway could not
-- publish are published later by the scheduler's relay.
create table outbox (
    id           bigserial primary key,
    job_id       uuid not null references jobs (id) on delete cascade,
    exchange     text not null,
    routing_key  text not null,
    headers      jsonb not null default '{}',
    body         text not null,
    created_at   timestamptz not null default now(),
    sent_at      timestamptz,
    attempts     integer not null default 0,
    -- a row whose publish failed waits before the relay tries it again (exponential, capped)
    next_attempt_at  timestamptz not null default now(),
    last_error   text
);

create index outbox_unsent on outbox (next_attempt_at, id) where sent_at is null;
