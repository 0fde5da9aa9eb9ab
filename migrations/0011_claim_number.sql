-- Fencing by holder (docs/architecture.md, "Fencing"): every claim, an adoption of a launched attempt included,
-- takes the next claim number, and every write a worker makes names the attempt, the claim number and itself. A
-- worker that lost its lease cannot write any more once another worker claimed the job, even one that adopted the
-- same attempt. Append-only, like the migrations before it.
alter table jobs add column claim_number integer not null default 0;
