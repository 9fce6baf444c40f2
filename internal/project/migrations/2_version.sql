-- Several nodes: every change moves the version, and the other nodes
-- reload their snapshot when they see it move.
CREATE TABLE state_version (
	id      integer PRIMARY KEY CHECK (id = 0),
	version bigint NOT NULL
);
INSERT INTO state_version (id, version) VALUES (0, 0);
