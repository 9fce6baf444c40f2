// Package app wires sluice together and runs it: the only package that
// imports everything.
package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/internal/admin"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/console"
	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/postgres"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/ingest"
	"github.com/sluicehq/sluice/internal/live"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/bigquerysink"
	"github.com/sluicehq/sluice/internal/sink/clickhousesink"
	"github.com/sluicehq/sluice/internal/sink/ga4sink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// Version is the build's version, set with -ldflags "-X …app.Version=v1.2.3".
var Version = ""

// BuildVersion returns Version, else the module version, else "dev".
func BuildVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// NewLogger makes the process logger: text on a terminal, JSON otherwise,
// unless format says which.
func NewLogger(level, format string, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// errNotServing is the readiness of a server that is starting or stopping.
var errNotServing = errors.New("starting or stopping")

// shutdownTimeout bounds how long in-flight requests may take to finish.
const shutdownTimeout = 30 * time.Second

// Run serves until ctx ends (SIGINT/SIGTERM), then stops accepting,
// finishes in-flight requests, commits what is queued and returns nil.
// out receives the start banner.
func Run(ctx context.Context, cfg *config.Config, out io.Writer, logger *slog.Logger) (err error) {
	if err := CheckHooks(cfg); err != nil {
		return fmt.Errorf("%s: %w", cfg.File, err)
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Release()

	stores, err := OpenStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer stores.Close()
	state := stores.State
	// Nodes that start together provision one after the other, each
	// seeing what the one before made.
	unlock, err := stores.provisionLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := state.Refresh(ctx); err != nil {
		return err
	}
	if err := state.Provision(ctx, cfg.Projects, logger.With("component", "provision")); err != nil {
		return fmt.Errorf("provision projects from %s: %w", cfg.File, err)
	}
	tokenHash, newToken, err := AdminToken(ctx, state, cfg.AdminToken)
	if err != nil {
		return err
	}
	// A token generated now is shown once, in the banner. A start that
	// fails before the banner (a listener's port taken) forgets it, so
	// the next start generates and shows a new one.
	shown := false
	defer func() {
		if err != nil && newToken != "" && !shown {
			if rerr := state.SetMeta(context.Background(), metaAdminToken, ""); rerr != nil {
				logger.Warn("cannot forget the admin token that was never shown; run `sluice admin-token reset`", "err", rerr)
			}
		}
	}()

	gen, err := event.NewGenerator(cfg.WorkerID, nil)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_build_info", Help: "The running build."}, []string{"version"})
	buildInfo.WithLabelValues(BuildVersion()).Set(1)
	reg.MustRegister(buildInfo)

	elog, err := OpenLog(ctx, cfg, reg, logger.With("component", "eventlog"))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := elog.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close event log: %w", cerr)
		}
	}()

	if stores.Leases != nil {
		// Only a node that can start records its key as the cluster's.
		if err := CheckHooksKey(ctx, state, filepath.Join(cfg.DataDir, datadir.HooksKey)); err != nil {
			return err
		}
	}
	profiles := stores.Profiles
	consumer := &profile.Consumer{Store: profiles, Log: elog, Logger: logger.With("component", "profiles")}
	consumer.Register(reg)
	people := &profile.People{Store: profiles, Log: elog, Consumer: consumer}

	allow, _ := cfg.Hooks.AllowPrefixes() // validated with the config
	hooks, err := hook.Open(hook.Config{
		Store: stores.Hooks, KeyPath: filepath.Join(cfg.DataDir, datadir.HooksKey), Leases: stores.Leases, Holder: stores.Holder,
		RetryTimes: cfg.Hooks.RetryTimes, RetryPeriod: time.Duration(cfg.Hooks.RetryPeriod),
		StopAfterDeadLetters: cfg.Hooks.StopAfterDeadLetters, AllowNetworks: allow, ContentRetention: time.Duration(cfg.Hooks.ContentRetention),
		Destinations: Destinations(),
	}, elog, state, people, reg, logger.With("component", "hooks"))
	if err != nil {
		return err
	}
	defer hooks.Close()
	var hub *live.Hub
	people.Forget = func(ctx context.Context, projectID uint32, ids []event.ID) error {
		hub.Forget(ids)                          // the live backlog
		return hooks.Forget(ctx, projectID, ids) // the deliveries not yet made
	}
	if err := hooks.Provision(ctx, cfg.Hooks.Provision, logger.With("component", "provision")); err != nil {
		return fmt.Errorf("provision hooks from %s: %w", cfg.File, err)
	}
	unlock()

	// Ready while serving and while the event log takes appends; else
	// /readyz says why.
	var ready atomic.Bool
	readiness := func() error {
		if !ready.Load() {
			return errNotServing
		}
		return elog.Health()
	}
	// One follower of the log for every live client (the console, SSE,
	// long-polls), and the refusals of ingest kept in memory beside it.
	hub = live.New(live.Config{Erased: hooks.Erased}, elog, reg, logger.With("component", "live"))
	sampler := admin.NewSampler(admin.SamplerConfig{}, reg)
	trusted, _ := cfg.TrustedPrefixes() // validated with the config
	ingestHandler := ingest.New(ingest.Config{TrustedProxies: trusted, Ready: readiness, KeepContent: hooks.KeepContent, Refused: refusedTo(hub)},
		elog, Dialects(cfg, state, gen, logger.With("component", "ingest")), reg, logger.With("component", "ingest"))
	web := console.New(console.Config{TokenHash: tokenHash, Version: BuildVersion()}, logger.With("component", "console"))
	adminHandler := admin.New(admin.Config{TokenHash: tokenHash, Ready: readiness, Profiles: people, Hooks: hooks, Live: hub, Overview: sampler,
		Sessions: web, Console: web}, state, elog, reg, logger.With("component", "admin"))

	ingestLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ingest listener: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ingestLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}

	// Long polls on the admin API end when the server stops.
	adminBase, stopAdminBase := context.WithCancel(context.Background())
	defer stopAdminBase()
	errLog := slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn)
	ingestSrv := &http.Server{
		Handler: ingestHandler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: errLog,
	}
	adminSrv := &http.Server{
		Handler: adminHandler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: errLog, BaseContext: func(net.Listener) context.Context { return adminBase },
	}

	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	info := datadir.RunInfo{
		PID:    os.Getpid(),
		Ingest: scheme + "://" + dialAddr(ingestLn.Addr()),
		Admin:  "http://" + dialAddr(adminLn.Addr()),
	}

	retCtx, stopRetention := context.WithCancel(ctx)
	var bg sync.WaitGroup
	// Retention, content clean-up and the profile consumer run on one
	// node of a cluster at a time (stores.once).
	deleted := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_log_retention_deleted_total", Help: "Events deleted by retention."})
	contentDeleted := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_content_retention_deleted_total", Help: "Raw requests (kept for hooks with include_content) deleted by their retention."})
	held := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_lease_held",
		Help: "1 while this node does the job that runs on one node at a time: profiles, retention, content-retention."}, []string{"lease"})
	reg.MustRegister(deleted, contentDeleted, held)
	bg.Add(1)
	go func() {
		defer bg.Done()
		keep := time.Duration(cfg.Retention)
		stores.once(retCtx, "retention", held, logger, func(ctx context.Context) {
			eventlog.Retention{
				Keep: keep, Every: min(max(keep/24, time.Minute), time.Hour),
				Log: logger.With("component", "retention"), Deleted: func(n int64) { deleted.Add(float64(n)) },
			}.Run(ctx, elog)
		})
	}()

	bg.Add(1)
	go func() {
		defer bg.Done()
		keep := hooks.ContentRetention()
		stores.once(retCtx, "content-retention", held, logger, func(ctx context.Context) {
			eventlog.Retention{
				Keep: keep, Every: min(max(keep/24, time.Minute), time.Hour), Delete: elog.DeleteContentsBefore, What: "raw requests",
				Log: logger.With("component", "retention"), Deleted: func(n int64) { contentDeleted.Add(float64(n)) },
			}.Run(ctx, elog)
		})
	}()

	bg.Add(1)
	go func() {
		defer bg.Done()
		stores.once(retCtx, "profiles", held, logger, consumer.Run)
	}()
	if stores.Leases != nil {
		// Changes made through other nodes, and the profile consumer's
		// progress where it runs elsewhere.
		bg.Add(2)
		go func() {
			defer bg.Done()
			state.Watch(retCtx, 0, logger.With("component", "projects"))
		}()
		go func() {
			defer bg.Done()
			consumer.Follow(retCtx)
		}()
	}
	bg.Add(2)
	go func() {
		defer bg.Done()
		hub.Run(retCtx)
	}()
	go func() {
		defer bg.Done()
		sampler.Run(retCtx)
	}()
	hooks.Start(retCtx)

	serveErr := make(chan error, 2)
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = ingestSrv.ServeTLS(ingestLn, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = ingestSrv.Serve(ingestLn)
		}
		serveErr <- fmt.Errorf("ingest listener: %w", err)
	}()
	go func() { serveErr <- fmt.Errorf("admin listener: %w", adminSrv.Serve(adminLn)) }()

	// The banner goes out before the run info that tells the CLI (and
	// tests) the server is up, so whoever sees one sees both.
	printBanner(out, cfg, info, newToken)
	shown = true
	if err := lock.WriteRunInfo(info); err != nil {
		logger.Warn("cannot record listener addresses for the CLI", "err", err)
	}
	defer lock.RemoveRunInfo()
	ready.Store(true)
	logger.Info("sluice ready", "version", BuildVersion(), "ingest", info.Ingest, "admin", info.Admin, "data_dir", cfg.DataDir, "storage", cfg.Storage)

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing in-flight requests")
	case runErr = <-serveErr:
		logger.Error("listener failed; shutting down", "err", runErr)
	}
	ready.Store(false)
	stopAdminBase()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	if err := ingestSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("ingest shutdown: %w", err))
	}
	if err := adminSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("admin shutdown: %w", err))
	}
	stopRetention()
	bg.Wait()
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		errs = append(errs, runErr)
	}
	logger.Info("stopped", "head", elog.Head().String())
	return errors.Join(errs...)
}

// OpenLog opens the event log of cfg.Storage: the SQLite file in the data
// dir, or the PostgreSQL database that the nodes of a cluster share.
func OpenLog(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger) (eventlog.Log, error) {
	if cfg.Storage != config.StoragePostgres {
		l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(cfg.DataDir, datadir.EventsFile), Worker: cfg.WorkerID}, reg, logger)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	pc, err := cfg.Postgres.PoolConfig()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := postgres.Open(octx, postgres.Config{Pool: pc, Worker: cfg.WorkerID, AllowSynchronousCommitOff: cfg.Postgres.AllowSynchronousCommitOff}, reg, logger)
	if err != nil {
		// pgx's errors name the host, port, user and database, never
		// the password: the DSN itself is not repeated here.
		return nil, fmt.Errorf("open the event log in PostgreSQL: %w", err)
	}
	return l, nil
}

// refusedTo hands ingest's refusals to the live hub.
func refusedTo(hub *live.Hub) func(ingest.Refusal) {
	return func(r ingest.Refusal) {
		lr := live.Refusal{Time: r.Time, Status: r.Error.Status, Code: r.Error.Code, Dialect: r.Dialect, Source: r.ClientIP,
			Method: r.Method, Path: r.Path, Message: r.Error.Message, Errors: r.Error.Errors}
		if r.Project != nil {
			id := r.Project.ID
			lr.ProjectID = &id
		}
		hub.Refused(lr)
	}
}

// Dialects is the registry of ingest dialects, in the order they are asked
// which one serves a request: the webhook dialect takes every path the
// others leave, so it goes last. A new dialect is one line here.
func Dialects(cfg *config.Config, state *project.Store, gen *event.Generator, logger *slog.Logger) []dialect.Dialect {
	return []dialect.Dialect{
		&dialect.Track{Projects: state, HitLimit: int(cfg.TrackHitLimit), BatchLimit: int64(cfg.TrackBatchLimit)},
		&dialect.Commerce{Projects: state, EventLimit: int(cfg.CommerceEventLimit), BatchLimit: int64(cfg.CommerceBatchLimit)},
		&dialect.S2S{Projects: state, Limit: int64(cfg.S2SLimit)},
		&dialect.Webhook{Projects: state, NewUID: gen.Next, BodyLimit: int64(cfg.BodyLimit),
			CreateProject: createOnFirstEvent(cfg, state, logger)},
	}
}

// Destinations are the delivery types of hooks: a new one is its package
// (internal/sink/<name>) and one line here.
func Destinations() []sink.Destination {
	return []sink.Destination{
		httpsink.Destination(),
		amqpsink.QueueDestination(),
		amqpsink.ExchangeDestination(),
		kafkasink.Destination(),
		ga4sink.Destination(),
		bigquerysink.Destination(),
		clickhousesink.Destination(),
	}
}

// CheckHooks checks the provisioned hooks of cfg against the
// destinations, before anything is opened: a config that declares a hook
// of an unknown type, or with bad settings, is refused as it is loaded
// (config.Validate checks the rest of each hook).
func CheckHooks(cfg *config.Config) error {
	dests, err := hook.NewDestinations(Destinations())
	if err != nil {
		return err
	}
	var errs []error
	for i, sp := range cfg.Hooks.Provision {
		if err := dests.Check(sp.Hook); err != nil {
			errs = append(errs, fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err))
		}
	}
	return errors.Join(errs...)
}

// createOnFirstEvent is the webhook_create_projects setting: nil when it
// is off, else a function that creates project id with default settings,
// named webhook-<id> (two first events at once both get the project).
func createOnFirstEvent(cfg *config.Config, state *project.Store, logger *slog.Logger) func(context.Context, uint32) (*project.Project, error) {
	if !cfg.WebhookCreateProjects {
		return nil
	}
	return func(ctx context.Context, id uint32) (*project.Project, error) {
		p, err := state.Create(ctx, &id, fmt.Sprintf("webhook-%d", id), project.Settings{})
		if err == nil {
			logger.Info("created a project on its first webhook event", "project", id)
			return &p, nil
		}
		if errors.Is(err, project.ErrExists) {
			if p, ok := state.Get(id); ok {
				return p, nil
			}
		}
		return nil, fmt.Errorf("create project %d on its first event: %w", id, err)
	}
}

// AdminToken resolves the admin token: SLUICE_ADMIN_TOKEN when set,
// otherwise the one generated at first start, whose SHA-256 is kept in the
// state database. A newly generated token is returned once, to print.
func AdminToken(ctx context.Context, state *project.Store, fromEnv string) (hash [32]byte, generated string, err error) {
	if fromEnv != "" {
		if len(fromEnv) < 16 {
			return hash, "", fmt.Errorf("%s is shorter than 16 characters", config.EnvAdminToken)
		}
		return sha256.Sum256([]byte(fromEnv)), "", nil
	}
	stored, err := state.Meta(ctx, metaAdminToken)
	if err != nil {
		return hash, "", err
	}
	if stored != "" {
		return storedAdminToken(stored)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return hash, "", fmt.Errorf("generate admin token: %w", err)
	}
	generated = "sla_" + hex.EncodeToString(raw[:])
	hash = sha256.Sum256([]byte(generated))
	// Nodes starting at once on one database agree on the first one
	// stored; only its node shows it.
	kept, err := state.SetMetaOnce(ctx, metaAdminToken, hex.EncodeToString(hash[:]))
	if err != nil {
		return hash, "", err
	}
	if kept != hex.EncodeToString(hash[:]) {
		return storedAdminToken(kept)
	}
	return hash, generated, nil
}

// storedAdminToken reads the stored hash of the admin token.
func storedAdminToken(stored string) (hash [32]byte, generated string, err error) {
	b, err := hex.DecodeString(stored)
	if err != nil || len(b) != 32 {
		return hash, "", fmt.Errorf("stored admin token hash is damaged; set %s", config.EnvAdminToken)
	}
	copy(hash[:], b)
	return hash, "", nil
}

// ResetAdminToken replaces the stored admin token with a new one and
// returns it (for `sluice admin-token reset`, run with the server stopped).
func ResetAdminToken(ctx context.Context, state *project.Store) (string, error) {
	if err := state.SetMeta(ctx, metaAdminToken, ""); err != nil {
		return "", err
	}
	_, tok, err := AdminToken(ctx, state, "")
	return tok, err
}

const metaAdminToken = "admin_token_sha256"

// dialAddr turns a listening address into one a local client can dial.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

func printBanner(w io.Writer, cfg *config.Config, info datadir.RunInfo, newToken string) {
	var b strings.Builder
	fmt.Fprintf(&b, "sluice %s is ready\n", BuildVersion())
	fmt.Fprintf(&b, "  ingest  %-28s webhooks: /{service}/{name}/{projectId}\n", info.Ingest)
	fmt.Fprintf(&b, "  admin   %-28s console /, API /api/v1, /metrics, /healthz, /readyz\n", info.Admin)
	fmt.Fprintf(&b, "  data    %s\n", cfg.DataDir)
	if cfg.Storage == config.StoragePostgres {
		fmt.Fprintf(&b, "  events  PostgreSQL (postgres.dsn)\n")
	}
	if cfg.File != "" {
		fmt.Fprintf(&b, "  config  %s\n", cfg.File)
	}
	if newToken != "" {
		fmt.Fprintf(&b, "\nAdmin token (shown once; only its SHA-256 is stored):\n  export %s=%s\n", config.EnvAdminToken, newToken)
	}
	fmt.Fprintf(&b, "\nTry it:\n  curl '%s/calltrack/call/0?param=myparamvalue'\n", info.Ingest)
	fmt.Fprintf(&b, "  curl -H \"Authorization: Bearer $%s\" '%s/api/v1/events?limit=5'\n\n", config.EnvAdminToken, info.Admin)
	_, _ = io.WriteString(w, b.String())
}
