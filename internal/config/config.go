// Package config is sluice's configuration: defaults, an optional YAML file
// decoded strictly, SLUICE_* environment variables and command-line flags,
// in that order of precedence (a flag beats the environment beats the file).
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
)

// Config is everything `sluice serve` can be told.
type Config struct {
	// Listen is the ingest listener's address.
	Listen string `yaml:"listen"`
	// AdminListen is the admin listener's address (API, metrics, health).
	AdminListen string `yaml:"admin_listen"`
	// DataDir holds the event log and the state database (with storage
	// postgres: the lock, the run info and the hooks' key only).
	DataDir string `yaml:"data_dir"`
	// Storage is where the state lives: sqlite (files in DataDir, one
	// node) or postgres (one database that several nodes share).
	Storage string `yaml:"storage"`
	// Postgres is the database of storage postgres.
	Postgres Postgres `yaml:"postgres"`
	// WorkerID is the 10-bit worker id in every flake id (0..1023).
	WorkerID int `yaml:"worker_id"`
	// Retention is how long events are kept; 0 keeps them forever.
	Retention Duration `yaml:"retention"`
	// BodyLimit caps a webhook request body.
	BodyLimit Size `yaml:"body_limit"`
	// TrackHitLimit caps one track hit; TrackBatchLimit a track batch.
	TrackHitLimit   Size `yaml:"track_hit_limit"`
	TrackBatchLimit Size `yaml:"track_batch_limit"`
	// S2SLimit caps an s2s request body.
	S2SLimit Size `yaml:"s2s_limit"`
	// CommerceEventLimit caps one commerce event; CommerceBatchLimit a
	// POST /v1/events body.
	CommerceEventLimit Size `yaml:"commerce_event_limit"`
	CommerceBatchLimit Size `yaml:"commerce_batch_limit"`
	// WebhookCreateProjects creates a webhook project (with default
	// settings) on the first event sent to its id, for senders migrated
	// with project ids of their own. Off by default: with it on, anyone who
	// reaches the ingest listener can create projects.
	WebhookCreateProjects bool `yaml:"webhook_create_projects"`
	// TrustedProxies are addresses or CIDRs whose forwarding headers count.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLSCert and TLSKey, when both set, make the ingest listener HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is auto (text on a terminal, JSON otherwise), text or json.
	LogFormat string `yaml:"log_format"`
	// Projects are provisioned at start, idempotently.
	Projects []project.Spec `yaml:"projects"`
	// Hooks are the delivery defaults and the SSRF guard's exceptions.
	Hooks Hooks `yaml:"hooks"`

	// AdminToken comes from SLUICE_ADMIN_TOKEN only: never from a flag
	// (visible in ps) or the file.
	AdminToken string `yaml:"-"`
	// File is the config file that was read, if any.
	File string `yaml:"-"`
}

// Hooks configures action hooks (docs/hooks.md).
type Hooks struct {
	// RetryTimes and RetryPeriod are the defaults of hooks that set none
	// (the seed's HOOK_RETRY_TIMES and HOOK_RETRY_PERIOD_SEC).
	RetryTimes  int      `yaml:"retry_times"`
	RetryPeriod Duration `yaml:"retry_period"`
	// StopAfterDeadLetters stops a hook after this many dead letters in a row.
	StopAfterDeadLetters int `yaml:"stop_after_dead_letters"`
	// AllowNetworks are CIDRs hooks may reach although the SSRF guard
	// refuses them (loopback, private, link-local).
	AllowNetworks []string `yaml:"allow_networks"`
	// ContentRetention is how long raw requests are kept for hooks with
	// include_content (the seed's HOOK_CONTENT_CLEANUP_HOURS, 72h).
	ContentRetention Duration `yaml:"content_retention"`
	// Provision declares hooks, created or brought up to date at start.
	Provision []hook.Spec `yaml:"provision"`
}

// Storage backends.
const (
	StorageSQLite   = "sqlite"
	StoragePostgres = "postgres"
)

// Postgres configures the PostgreSQL database of storage postgres
// (docs/operations.md, "Several nodes").
type Postgres struct {
	// DSN is the connection string, a URL or key=value pairs (see
	// PostgreSQL's libpq). It is a secret (it may hold the password):
	// never logged, printed or put in an error.
	DSN string `yaml:"dsn"`
	// MaxConns caps the connections of each pool a node opens (the event
	// log's readers, each store); MinConns are kept open.
	MaxConns int `yaml:"max_conns"`
	MinConns int `yaml:"min_conns"`
	// MaxConnLifetime closes a pooled connection this old (so that a
	// pooler or a failover balances again); MaxConnIdleTime one unused
	// this long.
	MaxConnLifetime Duration `yaml:"max_conn_lifetime"`
	MaxConnIdleTime Duration `yaml:"max_conn_idle_time"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// AllowSynchronousCommitOff lets sluice start on a server (or a
	// role, database or DSN) with synchronous_commit or fsync off. Then
	// a 2xx no longer means the event survives a crash of PostgreSQL:
	// off by default, sluice refuses such a server.
	AllowSynchronousCommitOff bool `yaml:"allow_synchronous_commit_off"`
}

// PoolConfig is the pgx pool configuration of p: the DSN with the pool
// settings applied. Its error never shows the DSN.
func (p Postgres) PoolConfig() (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(p.DSN)
	if err != nil {
		// pgx's parse errors quote the DSN (with the password masked,
		// as best it can): not even that is shown.
		return nil, errors.New("postgres.dsn: not a PostgreSQL connection string (a postgres:// URL or key=value pairs); it is not shown, as it may hold a password")
	}
	if p.MaxConns > 0 {
		pc.MaxConns = int32(p.MaxConns)
	}
	if p.MinConns > 0 {
		pc.MinConns = int32(p.MinConns)
	}
	if p.MaxConnLifetime > 0 {
		pc.MaxConnLifetime = time.Duration(p.MaxConnLifetime)
	}
	if p.MaxConnIdleTime > 0 {
		pc.MaxConnIdleTime = time.Duration(p.MaxConnIdleTime)
	}
	if p.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = time.Duration(p.ConnectTimeout)
	}
	return pc, nil
}

// AllowPrefixes parses Hooks.AllowNetworks.
func (h Hooks) AllowPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range h.AllowNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil {
				return nil, fmt.Errorf("hooks.allow_networks: %q is not a CIDR or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Default returns the configuration with nothing set.
func Default() Config {
	return Config{
		Listen:             ":8080",
		AdminListen:        "127.0.0.1:8081",
		DataDir:            "./sluice-data",
		Storage:            StorageSQLite,
		Postgres:           Postgres{MaxConns: 8, MaxConnLifetime: Duration(time.Hour), MaxConnIdleTime: Duration(30 * time.Minute), ConnectTimeout: Duration(10 * time.Second)},
		Retention:          Duration(30 * 24 * time.Hour),
		BodyLimit:          100 << 10,
		TrackHitLimit:      32 << 10,
		TrackBatchLimit:    500 << 10,
		S2SLimit:           1 << 20,
		CommerceEventLimit: 32 << 10,
		CommerceBatchLimit: 500 << 10,
		Hooks:              Hooks{RetryTimes: 4, RetryPeriod: Duration(15 * time.Second), StopAfterDeadLetters: 10, ContentRetention: Duration(72 * time.Hour)},
		LogLevel:           "info",
		LogFormat:          "auto",
	}
}

// setting is one option that a flag and an environment variable can set.
type setting struct {
	key   string // YAML key; the flag is key with '-', the variable SLUICE_KEY
	usage string
	set   func(c *Config, v string) error
	get   func(c *Config) string
}

// boolean reports whether the setting is a switch: its flag may stand
// alone (--webhook-create-projects) like a boolean flag.
func (s setting) boolean() bool {
	var c Config
	return s.get(&c) == "false"
}

// textFlag is a switch's flag: its value as text, "true" when it
// stands alone.
type textFlag struct {
	v      *string
	isBool bool
}

func (f *textFlag) String() string {
	if f == nil || f.v == nil {
		return ""
	}
	return *f.v
}
func (f *textFlag) Set(v string) error { *f.v = v; return nil }
func (f *textFlag) IsBoolFlag() bool   { return f.isBool }

var settings = []setting{
	{"listen", "ingest listener address", func(c *Config, v string) error { c.Listen = v; return nil }, func(c *Config) string { return c.Listen }},
	{"admin_listen", "admin listener address (API, metrics, health)", func(c *Config, v string) error { c.AdminListen = v; return nil }, func(c *Config) string { return c.AdminListen }},
	{"data_dir", "directory of the event log and state database", func(c *Config, v string) error { c.DataDir = v; return nil }, func(c *Config) string { return c.DataDir }},
	{"storage", "where the state lives: sqlite (files in data_dir) or postgres (shared by several nodes)", func(c *Config, v string) error { c.Storage = v; return nil }, func(c *Config) string { return c.Storage }},
	{"postgres_dsn", "PostgreSQL connection string of storage postgres (a secret: prefer the environment or the file to the flag, which ps shows)", func(c *Config, v string) error { c.Postgres.DSN = v; return nil }, func(c *Config) string { return "" }},
	{"postgres_max_conns", "connections of each PostgreSQL pool of a node", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Postgres.MaxConns = n
		return err
	}, func(c *Config) string { return strconv.Itoa(c.Postgres.MaxConns) }},
	{"postgres_min_conns", "connections each PostgreSQL pool keeps open", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Postgres.MinConns = n
		return err
	}, func(c *Config) string { return strconv.Itoa(c.Postgres.MinConns) }},
	{"postgres_max_conn_lifetime", "age at which a pooled PostgreSQL connection is closed", func(c *Config, v string) error { return c.Postgres.MaxConnLifetime.Set(v) }, func(c *Config) string { return c.Postgres.MaxConnLifetime.String() }},
	{"postgres_max_conn_idle_time", "idle time after which a pooled PostgreSQL connection is closed", func(c *Config, v string) error { return c.Postgres.MaxConnIdleTime.Set(v) }, func(c *Config) string { return c.Postgres.MaxConnIdleTime.String() }},
	{"postgres_connect_timeout", "bound of one PostgreSQL connection attempt", func(c *Config, v string) error { return c.Postgres.ConnectTimeout.Set(v) }, func(c *Config) string { return c.Postgres.ConnectTimeout.String() }},
	{"postgres_allow_synchronous_commit_off", "start on a PostgreSQL with synchronous_commit or fsync off, where a 2xx no longer survives its crash (true or false)", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.Postgres.AllowSynchronousCommitOff = b
		return err
	}, func(c *Config) string { return strconv.FormatBool(c.Postgres.AllowSynchronousCommitOff) }},
	{"worker_id", "flake id worker id, 0..1023", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.WorkerID = n
		return err
	}, func(c *Config) string { return strconv.Itoa(c.WorkerID) }},
	{"retention", "how long events are kept (e.g. 720h, 30d; 0 keeps them)", func(c *Config, v string) error { return c.Retention.Set(v) }, func(c *Config) string { return c.Retention.String() }},
	{"body_limit", "largest webhook request body (e.g. 100KiB, 1MB)", func(c *Config, v string) error { return c.BodyLimit.Set(v) }, func(c *Config) string { return c.BodyLimit.String() }},
	{"track_hit_limit", "largest track hit, alone or in a batch", func(c *Config, v string) error { return c.TrackHitLimit.Set(v) }, func(c *Config) string { return c.TrackHitLimit.String() }},
	{"track_batch_limit", "largest POST /track/batch body", func(c *Config, v string) error { return c.TrackBatchLimit.Set(v) }, func(c *Config) string { return c.TrackBatchLimit.String() }},
	{"s2s_limit", "largest s2s request body (POST /)", func(c *Config, v string) error { return c.S2SLimit.Set(v) }, func(c *Config) string { return c.S2SLimit.String() }},
	{"commerce_event_limit", "largest commerce event, alone or in a batch", func(c *Config, v string) error { return c.CommerceEventLimit.Set(v) }, func(c *Config) string { return c.CommerceEventLimit.String() }},
	{"commerce_batch_limit", "largest POST /v1/events body", func(c *Config, v string) error { return c.CommerceBatchLimit.Set(v) }, func(c *Config) string { return c.CommerceBatchLimit.String() }},
	{"webhook_create_projects", "create a webhook project on the first event sent to its id (true or false)", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		c.WebhookCreateProjects = b
		return err
	}, func(c *Config) string { return strconv.FormatBool(c.WebhookCreateProjects) }},
	{"hooks_allow_networks", "comma-separated CIDRs hooks may reach despite the SSRF guard (e.g. 127.0.0.0/8)", func(c *Config, v string) error {
		c.Hooks.AllowNetworks = splitList(v)
		return nil
	}, func(c *Config) string { return strings.Join(c.Hooks.AllowNetworks, ",") }},
	{"hooks_retry_times", "default attempts after the first for hooks that set none", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Hooks.RetryTimes = n
		return err
	}, func(c *Config) string { return strconv.Itoa(c.Hooks.RetryTimes) }},
	{"hooks_retry_period", "default wait between attempts for hooks that set none", func(c *Config, v string) error { return c.Hooks.RetryPeriod.Set(v) }, func(c *Config) string { return c.Hooks.RetryPeriod.String() }},
	{"hooks_content_retention", "how long raw requests are kept for hooks with include_content", func(c *Config, v string) error { return c.Hooks.ContentRetention.Set(v) }, func(c *Config) string { return c.Hooks.ContentRetention.String() }},
	{"trusted_proxies", "comma-separated addresses or CIDRs whose X-Forwarded-For counts", func(c *Config, v string) error {
		c.TrustedProxies = splitList(v)
		return nil
	}, func(c *Config) string { return strings.Join(c.TrustedProxies, ",") }},
	{"tls_cert", "TLS certificate file for the ingest listener", func(c *Config, v string) error { c.TLSCert = v; return nil }, func(c *Config) string { return c.TLSCert }},
	{"tls_key", "TLS key file for the ingest listener", func(c *Config, v string) error { c.TLSKey = v; return nil }, func(c *Config) string { return c.TLSKey }},
	{"log_level", "debug, info, warn or error", func(c *Config, v string) error { c.LogLevel = v; return nil }, func(c *Config) string { return c.LogLevel }},
	{"log_format", "auto, text or json", func(c *Config, v string) error { c.LogFormat = v; return nil }, func(c *Config) string { return c.LogFormat }},
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func envName(key string) string  { return "SLUICE_" + strings.ToUpper(key) }
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// Variables that are not serve settings.
const (
	EnvAdminToken = "SLUICE_ADMIN_TOKEN" // the admin token (serve and CLI)
	EnvConfig     = "SLUICE_CONFIG"      // the config file
	EnvAdminURL   = "SLUICE_ADMIN_URL"   // where the CLI finds a running server
)

// Load builds the configuration of `sluice serve` from args (without the
// subcommand) and the environment. Warnings (unknown SLUICE_ variables)
// go to warn.
func Load(name string, args []string, getenv func(string) string, environ []string, warn io.Writer) (*Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.String("config", "", "YAML config file (env "+EnvConfig+")")
	vals := make(map[string]*string, len(settings))
	def := Default()
	for _, s := range settings {
		if !s.boolean() {
			vals[s.key] = fs.String(flagName(s.key), s.get(&def), s.usage+" (env "+envName(s.key)+")")
			continue
		}
		v := s.get(&def)
		vals[s.key] = &v
		fs.Var(&textFlag{v: &v, isBool: true}, flagName(s.key), s.usage+" (env "+envName(s.key)+")")
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return nil, UsageError{FlagSet: fs, Err: err}
	}
	if fs.NArg() > 0 {
		return nil, UsageError{FlagSet: fs, Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	cfg := Default()
	path := *configFile
	if path == "" {
		path = getenv(EnvConfig)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if err := decodeYAML(b, &cfg); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		cfg.File = path
	}
	known := map[string]bool{EnvAdminToken: true, EnvConfig: true, EnvAdminURL: true}
	for _, s := range settings {
		known[envName(s.key)] = true
		if v := getenv(envName(s.key)); v != "" {
			if err := s.set(&cfg, v); err != nil {
				return nil, fmt.Errorf("%s: %w", envName(s.key), err)
			}
		}
	}
	var unknown []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SLUICE_") && !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		fmt.Fprintf(warn, "warning: ignoring unknown environment variable %s\n", k)
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if flagName(s.key) == f.Name {
				if err := s.set(&cfg, *vals[s.key]); err != nil && ferr == nil {
					ferr = fmt.Errorf("--%s: %w", f.Name, err)
				}
			}
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	cfg.AdminToken = getenv(EnvAdminToken)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// UsageError is a command-line mistake; it carries the flag set to print
// usage from.
type UsageError struct {
	FlagSet *flag.FlagSet
	Err     error
}

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// PrintUsage writes the serve flags.
func PrintUsage(w io.Writer, fs *flag.FlagSet) {
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// decodeYAML decodes strictly: an unknown key is an error naming it.
func decodeYAML(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file
		}
		return err
	}
	return nil
}

// Validate checks every setting and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	for name, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", name, addr))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: empty"))
	}
	switch c.Storage {
	case StorageSQLite:
	case StoragePostgres:
		if c.Postgres.DSN == "" {
			errs = append(errs, errors.New("postgres.dsn: empty, and storage is postgres (set it in the file or SLUICE_POSTGRES_DSN)"))
		} else if _, err := c.Postgres.PoolConfig(); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("storage: %q is not sqlite or postgres", c.Storage))
	}
	pg := c.Postgres
	if pg.MaxConns < 1 || pg.MaxConns > 1000 {
		errs = append(errs, fmt.Errorf("postgres.max_conns: %d is outside 1..1000", pg.MaxConns))
	}
	if pg.MinConns < 0 || pg.MinConns > pg.MaxConns {
		errs = append(errs, fmt.Errorf("postgres.min_conns: %d is outside 0..max_conns (%d)", pg.MinConns, pg.MaxConns))
	}
	if pg.MaxConnLifetime < 0 || pg.MaxConnIdleTime < 0 {
		errs = append(errs, errors.New("postgres.max_conn_lifetime and postgres.max_conn_idle_time: negative"))
	}
	if pg.ConnectTimeout <= 0 {
		errs = append(errs, errors.New("postgres.connect_timeout must be positive"))
	}
	if c.WorkerID < 0 || c.WorkerID > event.MaxWorker {
		errs = append(errs, fmt.Errorf("worker_id: %d is outside 0..%d", c.WorkerID, event.MaxWorker))
	}
	if c.Retention < 0 {
		errs = append(errs, errors.New("retention: negative"))
	}
	for name, v := range map[string]Size{"body_limit": c.BodyLimit, "track_hit_limit": c.TrackHitLimit, "track_batch_limit": c.TrackBatchLimit, "s2s_limit": c.S2SLimit,
		"commerce_event_limit": c.CommerceEventLimit, "commerce_batch_limit": c.CommerceBatchLimit} {
		if v < 1<<10 || v > 64<<20 {
			errs = append(errs, fmt.Errorf("%s: %s is outside 1KiB..64MiB", name, v))
		}
	}
	if c.TrackBatchLimit < c.TrackHitLimit {
		errs = append(errs, fmt.Errorf("track_batch_limit %s is below track_hit_limit %s", c.TrackBatchLimit, c.TrackHitLimit))
	}
	if c.CommerceBatchLimit < c.CommerceEventLimit {
		errs = append(errs, fmt.Errorf("commerce_batch_limit %s is below commerce_event_limit %s", c.CommerceBatchLimit, c.CommerceEventLimit))
	}
	if _, err := c.Hooks.AllowPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if c.Hooks.RetryTimes < 0 || c.Hooks.RetryTimes > 100 {
		errs = append(errs, fmt.Errorf("hooks.retry_times: %d is outside 0..100", c.Hooks.RetryTimes))
	}
	seenHooks := map[string]bool{}
	for i, sp := range c.Hooks.Provision {
		if err := sp.Check(); err != nil {
			errs = append(errs, fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err))
		}
		if seenHooks[sp.ID] {
			errs = append(errs, fmt.Errorf("hooks.provision[%d]: id %s declared twice", i, sp.ID))
		}
		seenHooks[sp.ID] = true
	}
	if c.Hooks.ContentRetention <= 0 {
		errs = append(errs, errors.New("hooks.content_retention must be positive"))
	}
	if c.Hooks.RetryPeriod <= 0 || c.Hooks.StopAfterDeadLetters < 1 {
		errs = append(errs, errors.New("hooks.retry_period must be positive and hooks.stop_after_dead_letters at least 1"))
	}
	if _, err := c.TrustedPrefixes(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format: %q is not auto, text or json", c.LogFormat))
	}
	seen := map[uint32]bool{}
	for i := range c.Projects {
		p := &c.Projects[i]
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("projects[%d] (id %d): %w", i, p.ID, err))
		}
		if seen[p.ID] {
			errs = append(errs, fmt.Errorf("projects[%d]: id %d declared twice", i, p.ID))
		}
		seen[p.ID] = true
	}
	return errors.Join(errs...)
}

// TrustedPrefixes parses TrustedProxies; a bare address is a /32 or /128.
func (c *Config) TrustedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %q is not an address or CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
