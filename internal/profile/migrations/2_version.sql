-- Several nodes: writers take turns on this row (locked until commit),
-- and every commit moves the version, so a node drops the profiles it
-- kept in memory when another wrote in between.
CREATE TABLE profile_version (
	id      integer PRIMARY KEY CHECK (id = 0),
	version bigint NOT NULL
);
INSERT INTO profile_version (id, version) VALUES (0, 0);
