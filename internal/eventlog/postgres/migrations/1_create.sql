-- The event log (see the package comment of internal/eventlog/postgres).
CREATE TABLE events (
	id         bigint  PRIMARY KEY, -- flake id, assigned at commit: grows in commit order across nodes
	project_id bigint  NOT NULL,
	key        text    NOT NULL,
	time       bigint  NOT NULL,    -- event time, Unix ms
	dedup      bytea,               -- NULL when the event has no dedup key
	body       bytea   NOT NULL,    -- the canonical JSON event
	content_id bigint,              -- event_contents.id of its raw request, when kept
	people     integer NOT NULL DEFAULT 0 -- how many identities it carries
);
CREATE INDEX events_project_time ON events (project_id, time);
CREATE UNIQUE INDEX events_dedup ON events (project_id, dedup) WHERE dedup IS NOT NULL;
-- The events that name a person, for the profile consumer: it walks this
-- index and never reads an event without identities.
CREATE INDEX events_people ON events (id) WHERE people > 0;
-- The events of a raw request, for erasure (few events keep one).
CREATE INDEX events_content ON events (content_id) WHERE content_id IS NOT NULL;

-- Raw requests kept for hooks with include_content, deleted after the
-- content retention. The id is that of the first event stored from it.
CREATE TABLE event_contents (
	id          bigint PRIMARY KEY,
	received_at bigint NOT NULL, -- Unix ms
	body        bytea  NOT NULL
);
CREATE INDEX event_contents_received ON event_contents (received_at);

-- One row: the largest id ever committed. Every commit of events locks
-- it (SELECT … FOR UPDATE) before it takes ids and raises it before it
-- commits, so commits that store events take their turns, each above
-- the last, and ids grow in commit order across nodes.
CREATE TABLE event_log (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	head      bigint  NOT NULL
);
INSERT INTO event_log (head) VALUES (0);
