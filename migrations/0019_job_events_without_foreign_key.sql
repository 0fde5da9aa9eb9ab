-- job_events.job_id loses its foreign key on jobs. Every event insert checked it with a lookup of the job and a
-- key-share lock on the job's row: one more index probe, one more WAL record and one more dirtied heap page per
-- event, on the submit path (docs/operations.md, "Where a submit's time goes"). The key is kept by the code instead:
-- every writer of job_events inserts in the transaction that inserted or locked the job's row (an insert's CTE,
-- `update … returning` or `select … from jobs`), so an event can neither precede its job nor outlive a
-- concurrent deletion of it. The cascade on delete stays, as a statement trigger: deleting jobs, by any path,
-- deletes their events in the same statement. Dropping a constraint and creating a trigger only change the
-- catalogue (each takes its lock for a moment, no scan), so this is safe on a live table. Append-only, like the
-- migrations before it.

create function jobs_delete_events() returns trigger language plpgsql as $$
begin
    delete from job_events e using deleted_jobs d where e.job_id = d.id;
    return null;
end;
$$;

create trigger jobs_delete_events after delete on jobs
    referencing old table as deleted_jobs for each statement execute function jobs_delete_events();

alter table job_events drop constraint job_events_job_id_fkey;
