-- The head before the last commit: a commit locks and raises the head in
-- one UPDATE, and computes its ids from the head it replaced.
ALTER TABLE event_log ADD COLUMN prev bigint NOT NULL DEFAULT 0;
UPDATE event_log SET prev = head;
