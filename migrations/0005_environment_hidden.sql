-- c2d schema, fifth version: environments the scheduler found stale (no process refreshed last_seen for a while) are
-- hidden from listings instead of deleted, since jobs still reference them. Append-only, like 0001.

alter table environments add column hidden boolean not null default false;
