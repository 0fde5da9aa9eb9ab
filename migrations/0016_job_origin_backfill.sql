-- Marks the jobs the Ocean API started before 0015 recorded origins: the native API never sets an agreement
-- id, the Ocean API always does. Uses the partial index on agreement_id; a separate file (and so transaction)
-- from 0015, so the row updates do not run under 0015's table lock.
update jobs set origin = 'ocean' where agreement_id is not null and origin <> 'ocean';
