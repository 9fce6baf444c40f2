// Package hook holds action hooks: their definitions (which events, which
// target, custom_data), their store, and the delivery loop that follows
// the durable log through a persisted cursor and hands batches to a sink.
package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/vm"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
)

// Defaults, from the seed where it has them (HOOK_RETRY_TIMES,
// HOOK_RETRY_PERIOD_SEC, HOOK_CONTENT_CLEANUP_HOURS).
const (
	DefaultMaxBatchSize         = 100
	DefaultBatchTimeout         = time.Second
	DefaultTimeout              = 10 * time.Second
	DefaultRetryTimes           = 4
	DefaultRetryPeriod          = 15 * time.Second
	DefaultMaxInFlight          = 1
	DefaultStopAfterDeadLetters = 10
	MaxBatchSize                = 10000
)

// Duration is a time.Duration written as "15s" in JSON and YAML.
type Duration = sink.Duration

// Hook is one action hook.
type Hook struct {
	ID     string `json:"id" yaml:"id"`
	Name   string `json:"name" yaml:"name"`
	Active bool   `json:"active" yaml:"active"`
	// ProjectID scopes the hook to one project; nil is every project.
	ProjectID *uint32 `json:"project_id" yaml:"project_id"`
	// Events are key globs: in.s2s.revenue.*, in.gen.calltrack.call.
	Events []string `json:"events" yaml:"events"`
	// Filter is an expr-lang expression over event (and profile).
	Filter string `json:"filter,omitempty" yaml:"filter"`
	// Type is the delivery type, one of the destinations registered in
	// app (http, rabbitmq_queue, rabbitmq_exchange, kafka,
	// google_analytics, bigquery, clickhouse); default http.
	Type string `json:"type" yaml:"type"`
	// Settings are the type's settings, written in JSON and YAML under
	// the key its destination names (its Section: http, rabbitmq, kafka,
	// google_analytics, …). A definition that is decoded holds them as
	// read until the destinations resolve it (Destinations.Resolve).
	Settings sink.Settings `json:"-" yaml:"-"`

	MaxBatchSize         int               `json:"max_batch_size" yaml:"max_batch_size"`
	BatchTimeout         Duration          `json:"batch_timeout" yaml:"batch_timeout"`
	RetryTimes           *int              `json:"retry_times" yaml:"retry_times"`
	RetryPeriod          Duration          `json:"retry_period" yaml:"retry_period"`
	RetrySchedule        string            `json:"retry_schedule" yaml:"retry_schedule"` // fixed or exponential
	MaxInFlight          int               `json:"max_in_flight" yaml:"max_in_flight"`
	StopAfterDeadLetters int               `json:"stop_after_dead_letters" yaml:"stop_after_dead_letters"`
	CustomData           map[string]string `json:"custom_data,omitempty" yaml:"custom_data"`
	IncludeContent       bool              `json:"include_content" yaml:"include_content"`

	// Read-only state.
	Cursor        event.ID  `json:"cursor" yaml:"-"`
	StoppedReason string    `json:"stopped_reason,omitempty" yaml:"-"`
	CreatedAt     time.Time `json:"created_at" yaml:"-"`
	UpdatedAt     time.Time `json:"updated_at" yaml:"-"`
	// SigningSecret is shown once, when the hook is created or its secret
	// rotated.
	SigningSecret string `json:"signing_secret,omitempty" yaml:"-"`
	// scan is where forming batches resumes: past the last batch
	// recorded in flight (>= Cursor when batches are in flight).
	scan event.ID
	// dest is the destination of Type, once resolved; sections are the
	// destination settings as read, until then.
	dest     *sink.Destination
	sections []section
}

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid hook")

// Defaults fills the unset settings: the batching defaults of its type
// and the settings' own, once resolved.
func (h *Hook) Defaults() {
	if h.Type == "" {
		h.Type = DefaultType
	}
	size, timeout := DefaultMaxBatchSize, DefaultBatchTimeout
	if d := h.dest; d != nil {
		if d.MaxBatchSize > 0 {
			size = d.MaxBatchSize
		}
		if d.BatchTimeout > 0 {
			timeout = d.BatchTimeout
		}
	}
	if h.MaxBatchSize == 0 {
		h.MaxBatchSize = size
	}
	if h.BatchTimeout == 0 {
		h.BatchTimeout = Duration(timeout)
	}
	if h.RetryTimes == nil {
		n := DefaultRetryTimes
		h.RetryTimes = &n
	}
	if h.RetryPeriod == 0 {
		h.RetryPeriod = Duration(DefaultRetryPeriod)
	}
	if h.RetrySchedule == "" {
		h.RetrySchedule = "fixed"
	}
	if h.MaxInFlight == 0 {
		h.MaxInFlight = DefaultMaxInFlight
	}
	if h.StopAfterDeadLetters == 0 {
		h.StopAfterDeadLetters = DefaultStopAfterDeadLetters
	}
	if h.Settings != nil && h.dest != nil {
		h.Settings.Defaults()
	}
}

// compiled is what the delivery loop runs.
type compiled struct {
	filter     *vm.Program
	customData []customField
	needs      sink.Needs
	route      *customField // a broker's routing key or record key template
}

// compile checks h (resolved, with defaults applied) field by field,
// within the bounds in validate.go and its destination's, and compiles
// its filter and templates: a hook that is saved can always run. The
// problems go to p (which may hold those of resolving h already); the
// error is an *Error naming each field that is wrong. A hook that is not
// resolved has its common fields checked only (a provisioned hook as the
// config is loaded, before the destinations are known).
func (h *Hook) compile(p *problems) (*compiled, error) {
	p.Text("name", h.Name, true, MaxNameLength)
	if strings.TrimSpace(h.Name) == "" && h.Name != "" {
		p.add("name", "required")
	}
	switch {
	case len(h.Events) == 0:
		p.add("events", "at least one key glob, e.g. in.s2s.revenue.*")
	case len(h.Events) > MaxEventGlobs:
		p.add("events", "at most %d key globs", MaxEventGlobs)
	}
	for i, g := range h.Events[:min(len(h.Events), MaxEventGlobs)] {
		if err := event.ValidateGlob(g); err != nil {
			p.add(fmt.Sprintf("events[%d]", i), "%v", err)
		} else if !utf8.ValidString(g) {
			p.add(fmt.Sprintf("events[%d]", i), "not valid UTF-8")
		}
	}
	c := &compiled{}
	if h.Filter != "" {
		c.filter = compileFilter(p, h.Filter)
	}
	if h.Settings != nil && h.dest != nil {
		sp := p.In(h.dest.Section)
		h.Settings.Check(sp)
		c.needs = h.Settings.Needs()
		if c.needs.Route != "" {
			if f, ok := checkTemplate(p, h.dest.Section+"."+c.needs.RoutePath, c.needs.RoutePath, c.needs.Route); ok {
				c.route = &f
			}
		}
	}
	if h.MaxBatchSize < 1 || h.MaxBatchSize > MaxBatchSize {
		p.add("max_batch_size", "1 to %d", MaxBatchSize)
	}
	p.Duration("batch_timeout", h.BatchTimeout, time.Millisecond, time.Hour)
	if *h.RetryTimes < 0 || *h.RetryTimes > MaxRetryTimes {
		p.add("retry_times", "0 to %d", MaxRetryTimes)
	}
	p.Duration("retry_period", h.RetryPeriod, time.Millisecond, 24*time.Hour)
	if h.RetrySchedule != "fixed" && h.RetrySchedule != "exponential" {
		p.add("retry_schedule", "fixed or exponential")
	}
	if h.MaxInFlight < 1 || h.MaxInFlight > MaxInFlight {
		p.add("max_in_flight", "1 to %d", MaxInFlight)
	}
	if h.StopAfterDeadLetters < 1 || h.StopAfterDeadLetters > MaxDeadStreak {
		p.add("stop_after_dead_letters", "1 to %d", MaxDeadStreak)
	}
	if len(h.CustomData) > MaxCustomData {
		p.add("custom_data", "at most %d fields", MaxCustomData)
	} else {
		for _, k := range sortedKeys(h.CustomData) {
			path := key("custom_data", k)
			if k == "" || len(k) > MaxCustomKey || !utf8.ValidString(k) {
				p.add(path, "a key of 1 to %d bytes of UTF-8", MaxCustomKey)
				continue
			}
			if f, ok := checkTemplate(p, path, k, h.CustomData[k]); ok {
				c.customData = append(c.customData, f)
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	sortFields(c.customData)
	return c, nil
}

// InUse is the refusal to delete project projectID while hooks of hs are
// scoped to it (they would stay active and deliver the events of the next
// project given the id), or nil.
func InUse(projectID uint32, hs []Hook) error {
	var ids []string
	for _, h := range hs {
		if h.ProjectID != nil && *h.ProjectID == projectID {
			ids = append(ids, h.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return &InUseError{ProjectID: projectID, Hooks: ids}
}

// InUseError names the hooks scoped to a project that is to be deleted.
type InUseError struct {
	ProjectID uint32
	Hooks     []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("project %d has %d hook(s) (%s): delete them, or give them another project, first", e.ProjectID, len(e.Hooks), strings.Join(e.Hooks, ", "))
}

// Definitions reads every hook definition a store holds (no secrets).
func Definitions(ctx context.Context, st Store) ([]Hook, error) {
	stored, err := st.Hooks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Hook, 0, len(stored))
	for _, sh := range stored {
		var h Hook
		if err := json.Unmarshal(sh.Spec, &h); err != nil {
			return nil, fmt.Errorf("hook %s: %w", sh.ID, err)
		}
		h.ID = sh.ID
		out = append(out, h)
	}
	return out, nil
}

// ProjectInUse is InUse over the hooks in the store, which every node
// shares: a hook another node created a moment ago counts too.
func (m *Manager) ProjectInUse(ctx context.Context, projectID uint32) error {
	hs, err := Definitions(ctx, m.store)
	if err != nil {
		return err
	}
	return InUse(projectID, hs)
}
