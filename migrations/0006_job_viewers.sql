-- Ocean-node's additionalViewers: besides the owner, these callers (token owners or addresses) may read a job
-- and its results. Append-only, like the migrations before it.
alter table jobs add column viewers text[] not null default '{}';
