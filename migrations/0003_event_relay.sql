-- c2d schema, third version: the event relay's cursor. The scheduler publishes job_events to the c2d.events
-- exchange in id order and records here the last id it published with a confirm. Append-only, like 0001.

create table event_relay_cursor (
    name        text primary key,
    last_id     bigint not null default 0,
    updated_at  timestamptz not null default now()
);

-- Events written before the relay existed were never promised to anyone: start after them rather than flood the
-- stream with history on the first deploy.
insert into event_relay_cursor (name, last_id) select 'c2d.events', coalesce(max(id), 0) from job_events;
