-- Profiles, as profiles.db keeps them (sqlitebackend.go).
CREATE TABLE profiles (
	id         text PRIMARY KEY, -- prf_…: named after the identity that created it
	project_id bigint NOT NULL,
	doc        text NOT NULL     -- the fold's state (fold.go), JSON
);
CREATE TABLE profile_identities (
	project_id bigint NOT NULL,
	type       text NOT NULL,
	value      text NOT NULL,
	profile_id text NOT NULL,
	PRIMARY KEY (project_id, type, value)
);
CREATE INDEX profile_identities_profile ON profile_identities (profile_id);
-- What each event with identities said of its person, and the profile
-- it belongs to: the source a profile is rebuilt from, and its timeline.
CREATE TABLE profile_observations (
	event_id   bigint PRIMARY KEY,
	project_id bigint NOT NULL,
	profile_id text NOT NULL,
	time       bigint NOT NULL, -- event time, Unix ms
	digest     text NOT NULL,
	key        text NOT NULL,
	doc        text NOT NULL    -- ids, attributes, facts
);
CREATE INDEX profile_observations_profile ON profile_observations (profile_id, time, event_id);
-- Ids of profiles that were merged into (or rebuilt as) another.
CREATE TABLE profile_aliases (
	id         text PRIMARY KEY,
	project_id bigint NOT NULL,
	into_id    text NOT NULL
);
CREATE INDEX profile_aliases_into ON profile_aliases (into_id);
-- Where each consumer of the log resumes.
CREATE TABLE consumer_cursors (
	name  text PRIMARY KEY,
	after bigint NOT NULL
);
