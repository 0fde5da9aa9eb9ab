-- New jobs wake the dispatchers and event relays after their commit, not from inside it. A transaction that runs
-- NOTIFY takes one lock for the whole database at commit and holds it until its commit record is flushed, so every
-- notifying transaction commits alone: with the insert triggers of migrations 0010 and 0012, single submits ran at
-- one WAL flush each (about 600/s here, against 3,000/s without them) instead of sharing flushes. The submitting
-- code now calls c2d_wake() once its insert committed (docs/operations.md, "Where a submit's time goes"). Other
-- writers (claims, status changes, finishes) keep their triggers. Append-only, like the migrations before it.

drop trigger jobs_notify_insert on jobs;

-- A job's first event (attempt 0, queued) is announced by c2d_wake; every other event still notifies from its own
-- transaction. Row-level, so that the check costs nothing when a batch of 10,000 first events is copied in;
-- Postgres folds the duplicate notifications of one transaction into one.
drop trigger job_events_notify on job_events;
create trigger job_events_notify after insert on job_events
    for each row when (new.attempt <> 0 or new.status <> 1) execute function job_events_notify();

-- Wakes the dispatchers of `environments` and the event relays; call it as a statement of its own. A wake-up is a
-- hint (the dispatcher's sweep and the relay's interval are the safety net), so its commit does not wait for the WAL
-- flush and holds the notify lock for microseconds. set_config(…, true) lasts until the end of the calling
-- transaction, so it covers the commit; it is skipped in a transaction that already wrote something, whose commit
-- must stay durable.
create function c2d_wake(environments text[]) returns void language plpgsql as $$
begin
    if pg_current_xact_id_if_assigned() is null then
        perform set_config('synchronous_commit', 'off', true);
    end if;
    perform pg_notify('c2d_dispatch', environment) from unnest(environments) environment;
    perform pg_notify('c2d_events', '');
end;
$$;
