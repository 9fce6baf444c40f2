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
	"unicode/utf8"

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

// compile checks h (with defaults applied) field by field, within the
// bounds in validate.go, and compiles its filter, templates and regex: a
// hook that is saved can always run. The error is an *Error naming each
// field that is wrong.
func (h *Hook) compile() (*compiled, error) {
	p := &problems{}
	checkText(p, "name", h.Name, true, MaxNameLength)
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
	switch h.Type {
	case TypeHTTP:
		if h.HTTP == nil {
			p.add("http", "required for type http (url, timeout, headers, auth, success_regex)")
			break
		}
		checkURL(p, h.HTTP.URL)
		checkDuration(p, "http.timeout", h.HTTP.Timeout, time.Millisecond, 10*time.Minute)
		if h.HTTP.SuccessRegex != "" {
			c.regex = checkRegex(p, h.HTTP.SuccessRegex)
		}
		withAuth := false
		if a := h.HTTP.Auth; a != nil {
			checkAuth(p, a)
			withAuth = a.Type == "basic" || a.Type == "bearer"
		}
		checkHeaders(p, h.HTTP.Headers, withAuth)
	default:
		h.compileTarget(c, p)
	}
	validType := h.Type == TypeHTTP || h.Type == TypeKafka || h.Type == TypeRabbitMQQueue || h.Type == TypeRabbitMQExchange
	// With an unknown type, its own error says it all.
	if validType && h.Type != TypeHTTP && h.HTTP != nil {
		p.add("http", "only for type http: type %s sets %s", h.Type, targetOf(h.Type))
	}
	if validType && h.Type != TypeKafka && h.Kafka != nil {
		p.add("kafka", "only for type kafka: type %s sets %s", h.Type, targetOf(h.Type))
	}
	if validType && h.Type != TypeRabbitMQQueue && h.Type != TypeRabbitMQExchange && h.RabbitMQ != nil {
		p.add("rabbitmq", "only for types rabbitmq_queue and rabbitmq_exchange: type %s sets %s", h.Type, targetOf(h.Type))
	}
	if h.MaxBatchSize < 1 || h.MaxBatchSize > MaxBatchSize {
		p.add("max_batch_size", "1 to %d", MaxBatchSize)
	}
	checkDuration(p, "batch_timeout", h.BatchTimeout, time.Millisecond, time.Hour)
	if *h.RetryTimes < 0 || *h.RetryTimes > MaxRetryTimes {
		p.add("retry_times", "0 to %d", MaxRetryTimes)
	}
	checkDuration(p, "retry_period", h.RetryPeriod, time.Millisecond, 24*time.Hour)
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

// targetOf names the target a delivery type sets.
func targetOf(typ string) string {
	switch typ {
	case TypeRabbitMQQueue, TypeRabbitMQExchange:
		return "rabbitmq"
	case TypeKafka:
		return "kafka"
	case TypeHTTP:
		return "http"
	}
	return "its own target"
}

func checkDuration(p *problems, path string, d Duration, lo, hi time.Duration) {
	if d < Duration(lo) || d > Duration(hi) {
		p.add(path, "%v to %v", shortDuration(lo), shortDuration(hi))
	}
}

// shortDuration writes 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
