-- The attempt whose cluster objects exist (set by the Kubernetes executor once it created the attempt's Secret).
-- A worker that claims a job whose current attempt was launched adopts that attempt's running objects instead of
-- starting a new attempt, so a lost worker never causes a second run. Append-only, like the migrations before it.
alter table jobs add column launched_attempt integer;
