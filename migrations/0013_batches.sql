-- Batches as things of their own, like Armada's job sets: who owns one, which environment it runs in, who else may
-- see it, and when it began. Jobs keep pointing at their batch through jobs.batch_id (0001); batches created before
-- this migration have no row here and are described from their jobs instead.
--
-- batch_submissions: one row per POST /v1/batches that carried an Idempotency-Key, so a client that resubmits a
-- chunk after a crash or a timeout gets the jobs of the first request back instead of new ones (the batch analogue
-- of jobs.idempotency_key). The row is written before the jobs, with the job ids the jobs will get; a retry after a
-- crash in between writes exactly those jobs. `position` and `job_count` place the chunk within its batch, so a
-- chunk that overlaps another chunk of the same batch (a client that changed its chunk size) is refused rather
-- than duplicated. Append-only, like the migrations before it.
create table batches (
    id           uuid primary key,
    owner        text not null,
    environment  text not null references environments (id),
    viewers      text[] not null default '{}',
    created_at   timestamptz not null default now()
);

create table batch_submissions (
    owner            text not null,
    idempotency_key  text not null,
    batch_id         uuid not null references batches (id) on delete cascade,
    position         integer,
    job_count        integer not null,
    job_ids          uuid[] not null,
    request_sha256   text not null,
    created_at       timestamptz not null default now(),
    -- set once the chunk's jobs are written: a key whose jobs are missing after that was expired, not interrupted
    written_at       timestamptz,
    primary key (owner, idempotency_key)
);

create index batch_submissions_batch on batch_submissions (batch_id, position) where position is not null;
