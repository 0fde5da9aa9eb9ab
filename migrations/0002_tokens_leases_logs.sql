-- c2d schema, second version: replay protection, API tokens, the scheduler's lease, log metadata, and the
-- indexes that listing, retention and cascading deletes need. Append-only, like 0001.

-- The last nonce accepted per signer (Ocean's replay protection). Nonces are numeric strings that may exceed
-- bigint (millisecond timestamps today, anything tomorrow), hence numeric.
create table nonces (
    signer      text primary key,
    nonce       numeric not null,
    updated_at  timestamptz not null default now()
);

-- Bearer tokens for operators and batch submitters. Only a hash of the token is stored; lookups go by hash.
create table api_tokens (
    id            uuid primary key,
    name          text not null,
    owner         text not null,
    scopes        text[] not null default '{}',
    token_hash    bytea not null unique,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

create index api_tokens_owner on api_tokens (owner, created_at desc, id desc);

-- The singleton scheduler's lease (anchors §8 rule 5): a holder renews lease_until; a new holder takes over only
-- after expiry and increments epoch, and every write the scheduler makes checks its epoch (fencing token).
create table scheduler_lease (
    name         text primary key,
    holder       text,
    epoch        bigint not null default 0,
    lease_until  timestamptz
);

-- Log files of each step of each attempt: metadata here, content in the result store.
create table job_logs (
    job_id      uuid not null references jobs (id) on delete cascade,
    attempt     integer not null,
    step        text not null,
    name        text not null,
    size        bigint not null,
    sha256      text not null,
    location    text not null,
    created_at  timestamptz not null default now(),
    primary key (job_id, attempt, step, name)
);

-- Keyset paging (never OFFSET): listing jobs of an environment newest first, and the unfinished jobs by status.
create index jobs_environment_created on jobs (environment, created_at desc, id desc);
create index jobs_status_active on jobs (status, created_at, id) where finished_at is null;
-- The jobs of one batch, in submission order.
create index jobs_batch on jobs (batch_id, created_at, id) where batch_id is not null;
-- Retention: terminal jobs per environment, oldest finish first.
create index jobs_finished on jobs (environment, finished_at) where finished_at is not null;
-- Deleting a job cascades to its outbox rows; without this index every deleted job scans the whole outbox.
create index outbox_job on outbox (job_id);
