package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/lease"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
)

// Stores are the state of a node other than the event log: projects,
// profiles and hooks, and the leases that share the work of a cluster.
// With storage sqlite they are files in the data directory and this node
// does everything; with storage postgres they are one database that
// several nodes share.
type Stores struct {
	State    *project.Store
	Profiles *profile.Store
	Hooks    hook.Store
	// Leases is nil with storage sqlite: the node is alone (the data
	// directory's lock) and does every job.
	Leases lease.Leaser
	// Holder names this node in the leases: host, process and a random
	// part, new at every start.
	Holder string
	pool   *pgxpool.Pool
}

// StoreMigrations are the PostgreSQL schemas of the stores (the event
// log applies its own).
func StoreMigrations() []pgmigrate.Component {
	return []pgmigrate.Component{project.Migrations, profile.Migrations, hook.Migrations, lease.Migrations}
}

// OpenStores opens the stores of cfg.Storage; with postgres it brings the
// schema up to date first (under pgmigrate's lock: nodes that start
// together apply each migration once).
func OpenStores(ctx context.Context, cfg *config.Config) (*Stores, error) {
	if cfg.Storage != config.StoragePostgres {
		state, err := project.Open(filepath.Join(cfg.DataDir, datadir.StateFile), nil)
		if err != nil {
			return nil, err
		}
		profiles, err := profile.Open(filepath.Join(cfg.DataDir, datadir.ProfileFile))
		if err != nil {
			state.Close()
			return nil, err
		}
		hooks, err := hook.OpenSQLite(filepath.Join(cfg.DataDir, datadir.HooksFile))
		if err != nil {
			state.Close()
			profiles.Close()
			return nil, err
		}
		return &Stores{State: state, Profiles: profiles, Hooks: hooks}, nil
	}
	pool, err := OpenPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pgmigrate.Apply(ctx, pool, StoreMigrations()...); err != nil {
		pool.Close()
		return nil, err
	}
	state, err := project.New(project.NewPostgres(pool), nil)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Stores{State: state, Profiles: profile.New(profile.NewPostgres(pool)), Hooks: hook.NewPostgres(pool),
		Leases: lease.NewPostgres(pool), Holder: holderName(), pool: pool}, nil
}

// OpenPool connects to the database of cfg.Postgres.
func OpenPool(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	pc, err := cfg.Postgres.PoolConfig()
	if err != nil {
		return nil, err
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "sluice stores" // for pg_stat_activity
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		// pgx's errors name the host, port, user and database, never
		// the password: the DSN itself is not repeated here.
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}

// Close closes the stores. The hooks' store is closed by the manager
// that was handed it.
func (s *Stores) Close() {
	s.Profiles.Close()
	s.State.Close()
	if s.pool != nil {
		s.pool.Close()
	}
}

func holderName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// metaHooksKey is where a cluster keeps the fingerprint of the key its
// hook secrets are sealed with.
const metaHooksKey = "hooks_key_fingerprint"

// CheckHooksKey makes sure a node of a cluster seals hook secrets with
// the cluster's key: the first node records its key's fingerprint, and a
// node whose hooks.key differs (or that has none while the cluster has
// one) is refused, before it could seal a secret no other node opens.
func CheckHooksKey(ctx context.Context, state *project.Store, keyPath string) error {
	stored, err := state.Meta(ctx, metaHooksKey)
	if err != nil {
		return err
	}
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) && stored != "" {
		return fmt.Errorf("%s is missing, and the hook secrets in PostgreSQL are sealed with a key: copy hooks.key from the data directory of a node of the cluster (or the one sluice migrate --from read) before this node starts", keyPath)
	}
	fp, err := hook.KeyFingerprint(keyPath)
	if err != nil {
		return err
	}
	kept, err := state.SetMetaOnce(ctx, metaHooksKey, fp)
	if err != nil {
		return err
	}
	if kept != fp {
		return fmt.Errorf("%s is not the key the cluster's hook secrets are sealed with: copy hooks.key from the data directory of a node of the cluster", keyPath)
	}
	return nil
}

// once runs job on one node of the cluster at a time, while this node
// holds the lease name (a node alone: always), until ctx ends. held, when
// set, shows it: 1 while the job runs here.
func (s *Stores) once(ctx context.Context, name string, held *prometheus.GaugeVec, logger *slog.Logger, job func(ctx context.Context)) {
	run := func(ctx context.Context) {
		if held != nil {
			held.WithLabelValues(name).Set(1)
			defer held.WithLabelValues(name).Set(0)
		}
		job(ctx)
	}
	if s.Leases == nil {
		run(ctx)
		return
	}
	lease.Run(ctx, s.Leases, lease.Timing{}, s.Holder, name, logger.With("component", "lease"), run)
}

// provisionKey is the advisory lock nodes provision under.
const provisionKey int64 = 0x736c7563656e7076 // "slucenpv"

// provisionLock makes the nodes of a cluster provision one at a time; a
// node alone has nothing to wait for. unlock may be called more than once.
func (s *Stores) provisionLock(ctx context.Context) (unlock func(), err error) {
	if s.pool == nil {
		return func() {}, nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, provisionKey); err != nil {
		conn.Release()
		return nil, fmt.Errorf("provision: lock: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, provisionKey)
			conn.Release()
		})
	}, nil
}
