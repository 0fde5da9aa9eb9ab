-- Kubernetes executor: the in-pod publish step uploads an attempt's outputs and logs to the gateway's internal
-- endpoint, authenticated by a secret made for that attempt. Only the secret's sha-256 is stored. Uploaded files are
-- recorded per attempt; the worker copies the current attempt's rows into job_results when it finishes the job
-- (finish stays the only writer of job_results). Append-only, like the migrations before it.
create table attempt_tokens (
    job_id      uuid not null references jobs (id) on delete cascade,
    attempt     integer not null,
    token_hash  bytea not null,
    created_at  timestamptz not null default now(),
    primary key (job_id, attempt)
);

create table attempt_uploads (
    job_id      uuid not null references jobs (id) on delete cascade,
    attempt     integer not null,
    name        text not null,
    kind        text not null check (kind in ('output', 'algorithmLog', 'configrationLog', 'publishLog')),
    size        bigint not null,
    sha256      text not null,
    location    text not null,
    created_at  timestamptz not null default now(),
    primary key (job_id, attempt, kind, name)
);
