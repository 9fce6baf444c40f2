package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
)

func env(m map[string]string) (func(string) string, []string) {
	var environ []string
	for k, v := range m {
		environ = append(environ, k+"="+v)
	}
	return func(k string) string { return m[k] }, environ
}

func load(t *testing.T, args []string, vars map[string]string) (*Config, string, error) {
	t.Helper()
	get, environ := env(vars)
	var warn bytes.Buffer
	c, err := Load("serve", args, get, environ, &warn)
	return c, warn.String(), err
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, _, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.AdminListen != "127.0.0.1:8081" || c.DataDir != "./sluice-data" ||
		time.Duration(c.Retention) != 30*24*time.Hour || c.BodyLimit != 100*1024 || c.WorkerID != 0 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestPrecedenceFlagOverEnvOverFile(t *testing.T) {
	file := writeFile(t, "listen: \":7000\"\nadmin_listen: \"127.0.0.1:7001\"\ndata_dir: /tmp/from-file\nworker_id: 3\n")
	c, _, err := load(t, []string{"--config", file, "--listen", ":9000"}, map[string]string{
		"SLUICE_LISTEN": ":8500", "SLUICE_DATA_DIR": "/tmp/from-env",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9000" {
		t.Errorf("listen %q: the flag must win", c.Listen)
	}
	if c.DataDir != "/tmp/from-env" {
		t.Errorf("data_dir %q: the environment must beat the file", c.DataDir)
	}
	if c.AdminListen != "127.0.0.1:7001" || c.WorkerID != 3 {
		t.Errorf("file values lost: %+v", c)
	}
	if c.File != file {
		t.Errorf("file %q", c.File)
	}
}

func TestConfigFromEnvVariable(t *testing.T) {
	file := writeFile(t, "worker_id: 9\n")
	c, _, err := load(t, nil, map[string]string{"SLUICE_CONFIG": file})
	if err != nil || c.WorkerID != 9 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestUnknownKeyIsNamed(t *testing.T) {
	for _, body := range []string{
		"listen: \":8080\"\nretension: 24h\n",
		"projects:\n  - id: 1\n    name: shop\n    settings:\n      webhook_auth: token\n      redirect_host: [a.com]\n",
	} {
		file := writeFile(t, body)
		_, _, err := load(t, []string{"--config", file}, nil)
		if err == nil {
			t.Fatalf("accepted %q", body)
		}
		key := "retension"
		if strings.Contains(body, "redirect_host:") {
			key = "redirect_host"
		}
		if !strings.Contains(err.Error(), key) {
			t.Fatalf("error %q does not name %q", err, key)
		}
	}
}

func TestUnknownEnvWarns(t *testing.T) {
	_, warn, err := load(t, nil, map[string]string{"SLUICE_LISTN": ":1", "SLUICE_ADMIN_TOKEN": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warn, "SLUICE_LISTN") || strings.Contains(warn, "ADMIN_TOKEN") {
		t.Fatalf("warnings %q", warn)
	}
}

func TestAdminTokenOnlyFromEnv(t *testing.T) {
	c, _, err := load(t, nil, map[string]string{"SLUICE_ADMIN_TOKEN": "secret-1"})
	if err != nil || c.AdminToken != "secret-1" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, _, err := load(t, []string{"--admin-token", "x"}, nil); err == nil {
		t.Fatal("admin token accepted as a flag")
	}
	file := writeFile(t, "admin_token: x\n")
	if _, _, err := load(t, []string{"--config", file}, nil); err == nil {
		t.Fatal("admin token accepted from the file")
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	_, _, err := load(t, []string{"--listen", "nope", "--worker-id", "2000", "--log-level", "loud", "--trusted-proxies", "10.0.0.0/8,bad"}, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"listen", "worker_id", "log_level", "trusted_proxies"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	var ue UsageError
	if _, _, err := load(t, []string{"--no-such-flag"}, nil); !errors.As(err, &ue) {
		t.Fatalf("unknown flag: %v", err)
	}
}

func TestProjectsFromFile(t *testing.T) {
	file := writeFile(t, `
projects:
  - id: 7
    name: shop
    settings:
      webhook_auth: token
      redirect_hosts: [example.com, "*.shop.io"]
    tokens:
      - name: crm
        secret: abc123
      - name: ci
        sha256: 6ca13d52ca70c883e0f0bb101e425a89e8624de51db2d2392593af6a84118090
`)
	c, _, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Projects) != 1 || c.Projects[0].Settings.WebhookAuth != "token" || len(c.Projects[0].Tokens) != 2 {
		t.Fatalf("%+v", c.Projects)
	}
	bad := writeFile(t, "projects:\n  - id: 7\n    name: shop\n    tokens:\n      - name: x\n        secret: ab\n")
	if _, _, err := load(t, []string{"--config", bad}, nil); err == nil || !strings.Contains(err.Error(), "tokens[0]") {
		t.Fatalf("short secret: %v", err)
	}
}

func TestUnits(t *testing.T) {
	sizes := map[string]Size{"100KB": 100 << 10, "100kib": 100 << 10, "1MiB": 1 << 20, "2m": 2 << 20, "4096": 4096, "512B": 512}
	for in, want := range sizes {
		var z Size
		if err := z.Set(in); err != nil || z != want {
			t.Errorf("size %q = %d, %v; want %d", in, z, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1GB", "1.5MB"} {
		var z Size
		if z.Set(bad) == nil {
			t.Errorf("size %q accepted", bad)
		}
	}
	durs := map[string]time.Duration{"30d": 30 * 24 * time.Hour, "720h": 720 * time.Hour, "90s": 90 * time.Second, "0": 0, "0.5d": 12 * time.Hour}
	for in, want := range durs {
		var d Duration
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("duration %q = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	if Size(100<<10).String() != "100KiB" {
		t.Error("String forms")
	}
	// The written form reads back as the same duration, and a week or more
	// of whole days is written in days.
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d", 7 * 24 * time.Hour: "7d", 72 * time.Hour: "72h", 15 * time.Second: "15s",
		90 * time.Minute: "1h30m", time.Hour: "1h", 10 * time.Minute: "10m", 36 * time.Hour: "36h", 0: "0s",
		1500 * time.Millisecond: "1.5s", 24*time.Hour + time.Second: "24h0m1s",
	} {
		var back Duration
		if got := Duration(d).String(); got != want || back.Set(got) != nil || time.Duration(back) != d {
			t.Errorf("Duration(%v).String() = %q (reads back as %v), want %q", d, got, time.Duration(back), want)
		}
	}
	file := writeFile(t, "retention: 7d\nbody_limit: 1MiB\n")
	c, _, err := load(t, []string{"--config", file}, nil)
	if err != nil || time.Duration(c.Retention) != 7*24*time.Hour || c.BodyLimit != 1<<20 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestHooksFromFile(t *testing.T) {
	file := writeFile(t, `
hooks:
  content_retention: 24h
  provision:
    - id: crm-revenue
      name: revenue to CRM
      active: true
      project_id: 7
      events: [in.s2s.revenue.*]
      http: {url: "https://crm.example.com/in", timeout: 5s}
      retry_times: 8
      start_from: "2026-11-01T00:00:00Z"
      signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
`)
	c, _, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Hooks.ContentRetention) != 24*time.Hour || len(c.Hooks.Provision) != 1 {
		t.Fatalf("%+v", c.Hooks)
	}
	sp := c.Hooks.Provision[0]
	// The settings of its type are read as the destinations (app) say.
	dests, _ := hook.NewDestinations([]sink.Destination{httpsink.Destination()})
	if err := dests.Resolve(&sp.Hook); err != nil {
		t.Fatal(err)
	}
	if hs := sp.Settings.(*httpsink.Settings); hs.URL != "https://crm.example.com/in" || time.Duration(hs.Timeout) != 5*time.Second {
		t.Fatalf("%+v", hs)
	}
	if sp.ID != "crm-revenue" || *sp.ProjectID != 7 || *sp.RetryTimes != 8 ||
		sp.StartFrom != "2026-11-01T00:00:00Z" || !strings.HasPrefix(sp.SigningSecret, "whsec_") {
		t.Fatalf("%+v", sp)
	}
	for body, want := range map[string]string{
		"hooks:\n  provision:\n    - {id: x, name: '', events: [a], http: {url: http://x}}\n":                                                            "hooks.provision[0] (x): invalid hook: name: required",
		"hooks:\n  provision:\n    - {id: x, name: x, events: [a], http: {url: http://x}, batch_size: 3}\n":                                              "batch_size",
		"hooks:\n  provision:\n    - {id: x, name: x, events: [a], http: {url: http://x}}\n    - {id: x, name: y, events: [a], http: {url: http://x}}\n": "declared twice",
	} {
		if _, _, err := load(t, []string{"--config", writeFile(t, body)}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", body, want, err)
		}
	}
}

func TestWebhookCreateProjects(t *testing.T) {
	for _, c := range []struct {
		args []string
		vars map[string]string
		file string
		want bool
	}{
		{want: false},
		{args: []string{"--webhook-create-projects"}, want: true},
		{args: []string{"--webhook-create-projects=false"}, vars: map[string]string{"SLUICE_WEBHOOK_CREATE_PROJECTS": "true"}, want: false},
		{vars: map[string]string{"SLUICE_WEBHOOK_CREATE_PROJECTS": "1"}, want: true},
		{file: "webhook_create_projects: true\n", want: true},
	} {
		args := c.args
		if c.file != "" {
			args = append([]string{"--config", writeFile(t, c.file)}, args...)
		}
		cfg, _, err := load(t, args, c.vars)
		if err != nil || cfg.WebhookCreateProjects != c.want {
			t.Fatalf("%v %v %q: %v, %v", c.args, c.vars, c.file, cfg, err)
		}
	}
	if _, _, err := load(t, nil, map[string]string{"SLUICE_WEBHOOK_CREATE_PROJECTS": "yes please"}); err == nil {
		t.Fatal("a value that is not a boolean was taken")
	}
}

func TestStorage(t *testing.T) {
	c, _, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage != StorageSQLite || c.Postgres.DSN != "" || c.Postgres.MaxConns != 8 || c.Postgres.AllowSynchronousCommitOff ||
		time.Duration(c.Postgres.ConnectTimeout) != 10*time.Second || time.Duration(c.Postgres.MaxConnLifetime) != time.Hour {
		t.Fatalf("storage defaults %q %+v", c.Storage, c.Postgres)
	}

	file := writeFile(t, "storage: postgres\npostgres:\n  dsn: postgres://sluice:pw@db.example:5432/sluice\n  max_conns: 20\n  min_conns: 2\n  max_conn_lifetime: 30m\n  max_conn_idle_time: 5m\n  connect_timeout: 3s\n  allow_synchronous_commit_off: true\n")
	c, _, err = load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Postgres{DSN: "postgres://sluice:pw@db.example:5432/sluice", MaxConns: 20, MinConns: 2, MaxConnLifetime: Duration(30 * time.Minute),
		MaxConnIdleTime: Duration(5 * time.Minute), ConnectTimeout: Duration(3 * time.Second), AllowSynchronousCommitOff: true}
	if c.Storage != StoragePostgres || c.Postgres != want {
		t.Fatalf("from the file: %q %+v", c.Storage, c.Postgres)
	}
	pc, err := c.Postgres.PoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	if pc.MaxConns != 20 || pc.MinConns != 2 || pc.MaxConnLifetime != 30*time.Minute || pc.MaxConnIdleTime != 5*time.Minute ||
		pc.ConnConfig.ConnectTimeout != 3*time.Second || pc.ConnConfig.Host != "db.example" || pc.ConnConfig.Password != "pw" {
		t.Fatalf("pool config %+v %+v", pc, pc.ConnConfig)
	}

	// The environment beats the file, a flag beats the environment; the
	// switch stands alone as a flag.
	c, _, err = load(t, []string{"--config", file, "--postgres-max-conns", "5", "--postgres-allow-synchronous-commit-off=false"},
		map[string]string{"SLUICE_POSTGRES_DSN": "host=other dbname=x", "SLUICE_POSTGRES_MAX_CONNS": "7", "SLUICE_STORAGE": "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.DSN != "host=other dbname=x" || c.Postgres.MaxConns != 5 || c.Postgres.AllowSynchronousCommitOff {
		t.Fatalf("env and flags: %+v", c.Postgres)
	}
	c, _, err = load(t, []string{"--storage", "postgres", "--postgres-dsn", "postgres://a@b/c", "--postgres-allow-synchronous-commit-off"}, nil)
	if err != nil || c.Storage != StoragePostgres || c.Postgres.DSN != "postgres://a@b/c" || !c.Postgres.AllowSynchronousCommitOff {
		t.Fatalf("flags: %+v, %v", c, err)
	}
}

func TestStorageValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown storage", []string{"--storage", "mysql"}, nil, `storage: "mysql" is not sqlite or postgres`},
		{"postgres without a dsn", []string{"--storage", "postgres"}, nil, "postgres.dsn: empty"},
		{"bad dsn", []string{"--storage", "postgres"}, map[string]string{"SLUICE_POSTGRES_DSN": "postgres://u:s3cret-pw@host:notaport/db"}, "postgres.dsn: not a PostgreSQL connection string"},
		{"max conns", []string{"--postgres-max-conns", "0"}, nil, "postgres.max_conns: 0 is outside 1..1000"},
		{"min conns", []string{"--postgres-min-conns", "9"}, nil, "postgres.min_conns: 9 is outside 0..max_conns (8)"},
		{"connect timeout", []string{"--postgres-connect-timeout", "0s"}, nil, "postgres.connect_timeout must be positive"},
		{"switch", []string{"--postgres-allow-synchronous-commit-off=maybe"}, nil, "--postgres-allow-synchronous-commit-off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			// The DSN is a secret: no part of it is in an error.
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "notaport") {
				t.Fatalf("the error shows the DSN: %v", err)
			}
		})
	}
	// The usage never shows a DSN, whatever was set.
	_, _, err := load(t, []string{"--postgres-dsn", "postgres://u:s3cret@h/d", "--nope"}, nil)
	var ue UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("%v", err)
	}
	var out bytes.Buffer
	PrintUsage(&out, ue.FlagSet)
	if !strings.Contains(out.String(), "-postgres-dsn") || strings.Contains(out.String(), "s3cret") {
		t.Fatalf("usage:\n%s", out.String())
	}
}
