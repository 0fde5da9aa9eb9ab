-- c2d schema, fourth version: Ocean's rule "one active job per agreementId", enforced by the database so two
-- concurrent starts with the same agreement cannot both win. Append-only, like 0001.

create unique index jobs_active_agreement on jobs (agreement_id) where agreement_id is not null and finished_at is null;
