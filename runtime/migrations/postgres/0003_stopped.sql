-- A session stopped by an operator or a limit (`stopped`, no `resumed` since):
-- the host performs nothing for it (journal::info::LogInfo::stopped).
ALTER TABLE logs ADD COLUMN stopped boolean NOT NULL DEFAULT false;
