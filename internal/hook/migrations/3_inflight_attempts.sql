-- The attempts a batch in flight has had (Store.Retry): after a restart,
-- or on the node that takes its hook over, it goes on with the next
-- attempt's number and the retry budget counts the attempts made before.
ALTER TABLE hook_inflight ADD COLUMN attempts integer NOT NULL DEFAULT 0;
