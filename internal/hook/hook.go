// Package hook holds action hooks: their definitions (which events, which
// target, custom_data), their store, and the delivery loop that follows
// the durable log through a persisted cursor and hands batches to a sink.
package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/event"
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
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "15s" or "1m"`)
	}
	return d.set(s)
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.set(n.Value) }

func (d *Duration) set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (write e.g. 500ms, 15s or 1m)", s)
	}
	*d = Duration(v)
	return nil
}

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
	// Type is the delivery type: http, rabbitmq_queue, rabbitmq_exchange
	// or kafka; the target of that type is set.
	Type     string          `json:"type" yaml:"type"`
	HTTP     *HTTPTarget     `json:"http,omitempty" yaml:"http"`
	RabbitMQ *RabbitMQTarget `json:"rabbitmq,omitempty" yaml:"rabbitmq"`
	Kafka    *KafkaTarget    `json:"kafka,omitempty" yaml:"kafka"`

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
}

// HTTPTarget is where an http hook POSTs its batches.
type HTTPTarget struct {
	URL     string            `json:"url" yaml:"url"`
	Timeout Duration          `json:"timeout" yaml:"timeout"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers"`
	Auth    *HTTPAuth         `json:"auth,omitempty" yaml:"auth"`
	// SuccessRegex, when set, must match the response body.
	SuccessRegex string `json:"success_regex,omitempty" yaml:"success_regex"`
}

// HTTPAuth authenticates requests. Password and Token are write-only: the
// API never returns them.
type HTTPAuth struct {
	Type     string `json:"type" yaml:"type"` // none, basic, bearer
	Username string `json:"username,omitempty" yaml:"username"`
	Password string `json:"password,omitempty" yaml:"password"`
	Token    string `json:"token,omitempty" yaml:"token"`
}

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid hook")

// Defaults fills the unset settings.
func (h *Hook) Defaults() {
	if h.Type == "" {
		h.Type = TypeHTTP
	}
	broker := h.Type != TypeHTTP
	if h.MaxBatchSize == 0 {
		h.MaxBatchSize = DefaultMaxBatchSize
		if broker {
			h.MaxBatchSize = DefaultBrokerBatchSize
		}
	}
	if h.BatchTimeout == 0 {
		h.BatchTimeout = Duration(DefaultBatchTimeout)
		if broker {
			h.BatchTimeout = Duration(DefaultBrokerBatchTimeout)
		}
	}
	h.brokerDefaults()
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
	if h.HTTP != nil && h.HTTP.Timeout == 0 {
		h.HTTP.Timeout = Duration(DefaultTimeout)
	}
}

// compiled is what the delivery loop runs.
type compiled struct {
	filter     *vm.Program
	customData []customField
	regex      *regexp.Regexp
	route      *customField // a broker's routing key or record key template
}

// Validate checks h (with defaults applied) and compiles its filter,
// templates and regex: a hook that is saved can always run.
func (h *Hook) compile() (*compiled, error) {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if strings.TrimSpace(h.Name) == "" || len(h.Name) > 200 {
		bad("name: required, at most 200 characters")
	}
	if len(h.Events) == 0 {
		bad("events: at least one key glob, e.g. in.s2s.revenue.*")
	}
	for i, g := range h.Events {
		if err := event.ValidateGlob(g); err != nil || g == "" {
			bad("events[%d]: %q is not a key glob", i, g)
		}
	}
	c := &compiled{}
	if h.Filter != "" {
		p, err := expr.Compile(h.Filter, expr.Env(map[string]any{"event": map[string]any{}, "profile": map[string]any{}}), expr.AsBool())
		if err != nil {
			bad("filter: %v", err)
		}
		c.filter = p
	}
	switch h.Type {
	case "http":
		if h.HTTP == nil {
			bad("http: required for type http (url, timeout, headers, auth, success_regex)")
			break
		}
		if !strings.HasPrefix(h.HTTP.URL, "http://") && !strings.HasPrefix(h.HTTP.URL, "https://") {
			bad("http.url: an http:// or https:// URL")
		}
		if h.HTTP.SuccessRegex != "" {
			re, err := regexp.Compile(h.HTTP.SuccessRegex)
			if err != nil {
				bad("http.success_regex: %v", err)
			}
			c.regex = re
		}
		if a := h.HTTP.Auth; a != nil {
			switch a.Type {
			case "", "none":
			case "basic":
				if a.Username == "" {
					bad("http.auth.username: required for basic")
				}
			case "bearer":
				if a.Token == "" {
					bad("http.auth.token: required for bearer")
				}
			default:
				bad("http.auth.type: none, basic or bearer")
			}
		}
		for k := range h.HTTP.Headers {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				bad("http.headers: %q is not a header name", k)
			}
		}
	default:
		h.compileTarget(c, bad)
	}
	if h.Type != TypeHTTP && h.HTTP != nil || h.Type != TypeKafka && h.Kafka != nil ||
		h.Type != TypeRabbitMQQueue && h.Type != TypeRabbitMQExchange && h.RabbitMQ != nil {
		bad("type %s: set only its own target (http, rabbitmq or kafka)", h.Type)
	}
	if h.MaxBatchSize < 1 || h.MaxBatchSize > MaxBatchSize {
		bad("max_batch_size: 1 to %d", MaxBatchSize)
	}
	if h.BatchTimeout < Duration(time.Millisecond) || h.BatchTimeout > Duration(time.Hour) {
		bad("batch_timeout: 1ms to 1h")
	}
	if *h.RetryTimes < 0 || *h.RetryTimes > 100 {
		bad("retry_times: 0 to 100")
	}
	if h.RetryPeriod < Duration(time.Millisecond) || h.RetryPeriod > Duration(24*time.Hour) {
		bad("retry_period: 1ms to 24h")
	}
	if h.RetrySchedule != "fixed" && h.RetrySchedule != "exponential" {
		bad("retry_schedule: fixed or exponential")
	}
	if h.MaxInFlight < 1 || h.MaxInFlight > 64 {
		bad("max_in_flight: 1 to 64")
	}
	if h.StopAfterDeadLetters < 1 {
		bad("stop_after_dead_letters: at least 1")
	}
	for k, v := range h.CustomData {
		f, err := parseTemplate(k, v)
		if err != nil {
			bad("custom_data[%q]: %v", k, err)
		}
		c.customData = append(c.customData, f)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	sortFields(c.customData)
	return c, nil
}

// A filter sees event, the canonical event as a map (key, service, name,
// projectId, data, identities, …), and profile, the attributes of the
// user's profile (empty when there is none).
