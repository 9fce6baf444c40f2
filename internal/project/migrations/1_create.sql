-- Projects, their tokens, event types and schemas, and meta values (the
-- admin token's hash), as state.db keeps them (sqlitebackend.go).
CREATE TABLE projects (
	id         bigint PRIMARY KEY CHECK (id >= 0 AND id <= 4294967295),
	name       text NOT NULL,
	settings   text NOT NULL DEFAULT '{}',
	created_at bigint NOT NULL -- Unix ms
);
CREATE TABLE tokens (
	id         text PRIMARY KEY,
	project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	name       text NOT NULL,
	hash       bytea NOT NULL UNIQUE, -- SHA-256 of the secret; the secret is never stored
	hint       text NOT NULL,
	created_at bigint NOT NULL,
	revoked_at bigint
);
CREATE INDEX tokens_project ON tokens (project_id);
CREATE TABLE event_types (
	project_id  bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	slug        text NOT NULL,
	kind        text NOT NULL,
	name        text NOT NULL DEFAULT '',
	description text NOT NULL DEFAULT '',
	created_at  bigint NOT NULL,
	PRIMARY KEY (project_id, slug)
);
CREATE TABLE event_schemas (
	project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
	type       text NOT NULL, -- <name>-v<N>
	body       text NOT NULL, -- the JSON Schema, compacted
	created_at bigint NOT NULL,
	PRIMARY KEY (project_id, type)
);
CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);
