package sink

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Destination is one delivery type of hooks: the value of a hook's
// "type", the key of the hook definition that holds the type's settings,
// and how to make them. The registry of destinations is written out in
// internal/app (app.Destinations); adding a type is a package that
// implements Settings, its tests, and one line there.
type Destination struct {
	// Type names the type in a hook's "type": http, rabbitmq_queue, …
	Type string
	// Section is the key of the hook definition that holds the settings
	// ("http", "rabbitmq"); several types may share one.
	Section string
	// New returns the type's settings with nothing set (a pointer), for
	// a section to be decoded into.
	New func() Settings
	// MaxBatchSize and BatchTimeout are the defaults of a hook of this
	// type (0: the hook's, 100 events and 1s).
	MaxBatchSize int
	BatchTimeout time.Duration
}

// Settings are a destination's settings, decoded from its section of a
// hook definition (JSON and YAML, the same keys) by the hook host.
type Settings interface {
	// Defaults fills what is not set.
	Defaults()
	// Check adds each problem of the settings (defaults applied) to p,
	// with its path inside the section: a hook that is saved can run.
	Check(p *Problems)
	// Secrets are the write-only settings: sealed in hooks.db, never
	// returned by the API, kept when an update leaves them out.
	Secrets() []Secret
	// Needs says what the sink reads from each message's Meta.
	Needs() Needs
	// AttemptTimeout bounds one delivery attempt (the loop adds a
	// margin).
	AttemptTimeout() time.Duration
	// NewSink makes the sink; it does not connect.
	NewSink(env Env) (Sink, error)
}

// Secret is one write-only setting: a stable name (its key in the sealed
// store) and where the settings hold it.
type Secret struct {
	Name  string
	Value *string
}

// Needs is what a sink reads from Batch.Meta. Without Meta the loop
// gives none (the HTTP sink sends the messages as they are).
type Needs struct {
	// Meta: one Meta per message, with the event's id, key and project.
	Meta bool
	// Route, when set, is a template (the syntax of custom_data) that
	// the loop renders into each Meta.Route; RoutePath is its path in
	// the section, for errors.
	Route, RoutePath string
	// RouteByProfile: without a Route, Meta.Route is the user's resolved
	// profile id, else the event id (Kafka's record key).
	RouteByProfile bool
	// Profile puts the user's resolved profile in Meta.Profile.
	Profile bool
	// Custom puts the project's custom dimensions and metrics that the
	// event carries in Meta.Custom.
	Custom bool
}

// Env is what a sink gets from the hook host.
type Env struct {
	// HookID names the hook (connection names, logs).
	HookID string
	// Guard is the SSRF guard: every outbound connection dials through
	// it.
	Guard *Guard
	// Signing are the hook's signing secrets (whsec_…), current first;
	// during a rotation the previous one too.
	Signing []string
	// InFlight is how many batches the hook may have in flight at once
	// (max_in_flight): a sink keeps that many connections open for reuse.
	InFlight int
	Now      func() time.Time
	Logger   *slog.Logger
}

// Profile is the user's resolved profile.
type Profile struct {
	ID         string
	Identities []Identity
	// Attributes are the profile's attributes as JSON values.
	Attributes map[string]json.RawMessage
}

// Identity is one way a user is known.
type Identity struct{ Type, Value string }

// Custom is one of the project's custom dimensions (Metric false: a
// string) or metrics (a number) and the value the event carries there:
// a JSON value, an array when the path goes through the line items.
type Custom struct {
	Name   string
	Metric bool
	Value  json.RawMessage
}
