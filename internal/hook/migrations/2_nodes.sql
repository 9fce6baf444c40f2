-- Several nodes: the generation of each hook's delivery loop fences the
-- writes of a loop whose hook was claimed again, and a version moved by
-- every change of a definition tells the other nodes to reload.
ALTER TABLE hooks ADD COLUMN generation bigint NOT NULL DEFAULT 0;
CREATE TABLE hook_version (
	id      integer PRIMARY KEY CHECK (id = 0),
	version bigint NOT NULL
);
INSERT INTO hook_version (id, version) VALUES (0, 0);
-- Events erased while batches holding them may be in flight on any node.
CREATE TABLE hook_forgotten (
	event_id  bigint PRIMARY KEY,
	erased_at bigint NOT NULL -- Unix ms
);
