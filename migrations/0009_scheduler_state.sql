-- What the active scheduler saw and did, written by the leader after each reconcile pass (inside its fenced
-- transaction), so every gateway can serve it on /metrics: the scheduler has no HTTP server. One row per lease name.
-- Counters (`*_total`) accumulate across passes and leaders; the other columns describe the latest pass.
create table scheduler_state (
    name                  text primary key,
    holder                text not null,
    epoch                 bigint not null,
    pass_finished_at      timestamptz not null default now(),
    pass_seconds          double precision not null,
    full_pass             boolean not null,
    last_full_pass_seconds double precision,
    jobs_read             integer not null default 0,
    passes_total          bigint not null default 0,
    planned_total         jsonb not null default '{}',
    applied_total         jsonb not null default '{}',
    failed_total          bigint not null default 0,
    fail_safe             text,
    fail_safe_detail      text,
    capacity              jsonb not null default '{}'
);
