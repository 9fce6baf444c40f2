-- Which node does a job that runs once at a time in the cluster (a
-- hook's delivery, the profile consumer, retention): the holder of its
-- lease until expires_at, by the database's clock.
CREATE TABLE leases (
	name       text PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
);
