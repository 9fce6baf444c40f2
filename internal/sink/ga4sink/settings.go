package ga4sink

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Type is the delivery type, and the key of its settings.
const Type = "google_analytics"

// Endpoints of the Measurement Protocol.
const (
	EndpointGlobal = "global"
	EndpointEU     = "eu"
	EndpointCustom = "custom"

	GlobalCollectURL = "https://www.google-analytics.com/mp/collect"
	EUCollectURL     = "https://region1.google-analytics.com/mp/collect"
)

// DefaultTimeout bounds one request.
const DefaultTimeout = 10 * time.Second

// Destination is the google_analytics type: events sent to a GA4 property
// (or a GA-compatible collector) through the Measurement Protocol.
func Destination() sink.Destination {
	return sink.Destination{Type: Type, Section: Type, New: func() sink.Settings { return &Settings{} },
		MaxBatchSize: 100, BatchTimeout: time.Second}
}

// Settings are a google_analytics hook's. APISecret is write-only.
type Settings struct {
	// MeasurementID is the web stream's id, G-XXXXXXXXXX.
	MeasurementID string `json:"measurement_id" yaml:"measurement_id"`
	APISecret     string `json:"api_secret,omitempty" yaml:"api_secret"`
	// Endpoint is global (default), eu (region1: data collected in the
	// EU) or custom: CollectURL, a GA-compatible collector (OWOX BI
	// Streaming and the like), with its validation endpoint
	// ValidationURL (default: the collect URL's /mp/collect as
	// /debug/mp/collect).
	Endpoint      string `json:"endpoint,omitempty" yaml:"endpoint"`
	CollectURL    string `json:"collect_url,omitempty" yaml:"collect_url"`
	ValidationURL string `json:"validation_url,omitempty" yaml:"validation_url"`
	// UserProperties names the project's custom dimensions and metrics
	// that go as user properties; the others go as event parameters.
	UserProperties []string      `json:"user_properties,omitempty" yaml:"user_properties"`
	Timeout        sink.Duration `json:"timeout" yaml:"timeout"`
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Endpoint == "" {
		s.Endpoint = EndpointGlobal
	}
	if s.Timeout == 0 {
		s.Timeout = sink.Duration(DefaultTimeout)
	}
}

// measurementID is a GA4 web stream's id.
var measurementID = regexp.MustCompile(`^G-[A-Z0-9]{4,16}$`)

func (s *Settings) Check(p *sink.Problems) {
	if !measurementID.MatchString(s.MeasurementID) {
		p.Add("measurement_id", "required: the web stream's measurement id, G- and 4 to 16 capital letters or digits")
	}
	p.Text("api_secret", s.APISecret, true, 256)
	switch s.Endpoint {
	case EndpointGlobal, EndpointEU:
		if s.CollectURL != "" || s.ValidationURL != "" {
			p.Add("collect_url", "only with endpoint: custom")
		}
	case EndpointCustom:
		p.URL("collect_url", s.CollectURL, "the API secret is api_secret")
		if s.ValidationURL != "" {
			p.URL("validation_url", s.ValidationURL, "the API secret is api_secret")
		}
	default:
		p.Add("endpoint", "global, eu or custom")
	}
	seen := map[string]bool{}
	for i, n := range s.UserProperties {
		path := fmt.Sprintf("user_properties[%d]", i)
		if problem := userPropertyName(n); problem != "" {
			p.Add(path, "%s", problem)
		}
		if seen[n] {
			p.Add(path, "%q twice", n)
		}
		seen[n] = true
	}
	if len(s.UserProperties) > MaxUserProperties {
		p.Add("user_properties", "at most %d", MaxUserProperties)
	}
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
}

func (s *Settings) Secrets() []sink.Secret {
	return []sink.Secret{{Name: "api_secret", Value: &s.APISecret}}
}

// Needs the user's profile (its GA client id) and the project's custom
// dimensions and metrics.
func (s *Settings) Needs() sink.Needs { return sink.Needs{Meta: true, Profile: true, Custom: true} }

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

// URLs are where events go and where the pre-test validates them.
func (s *Settings) URLs() (collect, validation string) { return s.collectURL(), s.validationURL() }

// collectURL and validationURL are where requests go.
func (s *Settings) collectURL() string {
	switch s.Endpoint {
	case EndpointEU:
		return EUCollectURL
	case EndpointCustom:
		return s.CollectURL
	}
	return GlobalCollectURL
}

func (s *Settings) validationURL() string {
	if s.Endpoint == EndpointCustom && s.ValidationURL != "" {
		return s.ValidationURL
	}
	c := s.collectURL()
	u, err := url.Parse(c)
	if err != nil {
		return c
	}
	if before, ok := strings.CutSuffix(u.Path, "/mp/collect"); ok {
		u.Path = before + "/debug/mp/collect"
		return u.String()
	}
	return c // a collector without a validation endpoint: the pre-test collects
}

func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	return New(Config{
		CollectURL: s.collectURL(), ValidationURL: s.validationURL(), MeasurementID: s.MeasurementID, APISecret: s.APISecret,
		UserProperties: s.UserProperties, Timeout: time.Duration(s.Timeout), Guard: env.Guard, Now: env.Now,
	})
}
