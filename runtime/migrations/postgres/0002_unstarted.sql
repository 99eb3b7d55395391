-- A tool approved by a writer that held no lease, which no lease holder has
-- claimed since: it has certainly not run (journal::info::OpenEffect::unstarted).
ALTER TABLE open ADD COLUMN unstarted boolean NOT NULL DEFAULT false;
