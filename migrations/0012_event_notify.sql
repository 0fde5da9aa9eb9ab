-- Wakes the event relays (LISTEN c2d_events) when job events commit, so a status change reaches c2d.events within
-- milliseconds instead of at the relay's next poll. One notification per statement (a batch of 10,000 events is one),
-- folded per transaction by Postgres. Append-only, like the migrations before it.
create function job_events_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('c2d_events', '');
    return null;
end;
$$;

create trigger job_events_notify after insert on job_events
    for each statement execute function job_events_notify();
