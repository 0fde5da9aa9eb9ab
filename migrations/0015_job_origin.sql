-- Which API a job came through, so each API sees only its own jobs: the Ocean operator-service API lists, stops
-- and serves results of Ocean jobs only. `ocean_signer` is the Provider address (lowercase) whose signature
-- started an Ocean job; in the Ocean API's open development mode a signer sees only the jobs it started.
-- Append-only, like the migrations before it. Both columns are cheap to add to a live table (a constant default
-- and a nullable column rewrite nothing); the check is added NOT VALID so it scans nothing either, and rows
-- written from now on are checked. Existing Ocean jobs are marked by 0016, outside this lock.
alter table jobs add column origin text not null default 'native';
alter table jobs add column ocean_signer text;
alter table jobs add constraint jobs_origin_known check (origin in ('native', 'ocean')) not valid;
