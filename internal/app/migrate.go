package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/postgres"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
)

// AllMigrations are the PostgreSQL schemas of everything: the event log
// and the stores.
func AllMigrations() []pgmigrate.Component {
	return append([]pgmigrate.Component{postgres.Migrations()}, StoreMigrations()...)
}

// Migrate brings the PostgreSQL database of cfg to this binary's schema,
// as every node does at start (under pgmigrate's lock).
func Migrate(ctx context.Context, cfg *config.Config) error {
	pool, err := OpenPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return pgmigrate.Apply(ctx, pool, AllMigrations()...)
}

// MigrateDataDir is MigrateFrom into the PostgreSQL event log of cfg.
func MigrateDataDir(ctx context.Context, cfg *config.Config, dir string, logger *slog.Logger) (*MigrateReport, error) {
	c := *cfg
	c.Storage = config.StoragePostgres
	l, err := OpenLog(ctx, &c, nil, logger)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	target, ok := l.(LogTarget)
	if !ok {
		return nil, fmt.Errorf("the PostgreSQL event log cannot be loaded into")
	}
	return MigrateFrom(ctx, cfg, dir, target, logger)
}

// LogTarget is the PostgreSQL event log as MigrateFrom fills it.
type LogTarget interface {
	eventlog.Loader
	Count(ctx context.Context, q eventlog.Query) (int64, error)
}

// MigrateReport counts what MigrateFrom copied.
type MigrateReport struct {
	Events, RawRequests                         int
	Projects, Tokens, EventTypes, Schemas, Meta int
	Hooks, InFlight, Attempts, DeadLetters      int
	Profiles, Identities, Aliases, Observations int
	Cursors                                     int
}

// ErrNotEmpty is a MigrateFrom into a database that holds data already.
var ErrNotEmpty = errors.New("the PostgreSQL database holds sluice data already")

// MigrateFrom copies the SQLite installation in the data directory dir
// (no server may run on it) into the PostgreSQL database of cfg, which
// must hold no sluice data yet: the events with their ids, dedup keys
// and raw requests, the projects with their tokens, event types, schemas
// and meta values, the hooks with their sealed secrets, cursors, batches
// in flight, attempts and dead letters, the profiles and every consumer
// cursor. Hook secrets stay sealed with dir's hooks.key, whose
// fingerprint the database keeps: every node needs a copy of that file.
func MigrateFrom(ctx context.Context, cfg *config.Config, dir string, log LogTarget, logger *slog.Logger) (*MigrateReport, error) {
	if _, err := os.Stat(filepath.Join(dir, datadir.StateFile)); err != nil {
		return nil, fmt.Errorf("%s is not a sluice data directory (no %s): %w", dir, datadir.StateFile, err)
	}
	lock, err := datadir.Acquire(dir)
	if errors.Is(err, datadir.ErrLocked) {
		return nil, fmt.Errorf("a sluice server is running on %s: stop it first", dir)
	}
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	pool, err := OpenPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := pgmigrate.Apply(ctx, pool, StoreMigrations()...); err != nil {
		return nil, err
	}
	if err := checkEmpty(ctx, pool, log); err != nil {
		return nil, err
	}
	rep := &MigrateReport{}
	if err := copyEvents(ctx, dir, log, rep, logger); err != nil {
		return rep, err
	}
	if err := copyProjects(ctx, pool, dir, rep); err != nil {
		return rep, err
	}
	if err := copyHooks(ctx, pool, dir, rep); err != nil {
		return rep, err
	}
	if err := copyProfiles(ctx, pool, dir, rep); err != nil {
		return rep, err
	}
	state, err := project.New(project.NewPostgres(pool), nil)
	if err != nil {
		return rep, err
	}
	// The nodes must seal and open hook secrets with dir's key.
	if err := CheckHooksKey(ctx, state, filepath.Join(dir, datadir.HooksKey)); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkEmpty refuses a database that holds projects, hooks, profiles or
// events already.
func checkEmpty(ctx context.Context, pool *pgxpool.Pool, log LogTarget) error {
	st, err := project.NewPostgres(pool).Load(ctx)
	if err != nil {
		return err
	}
	hs, err := hook.NewPostgres(pool).Hooks(ctx)
	if err != nil {
		return err
	}
	profiles := 0
	errStop := errors.New("stop")
	if err := profile.NewPostgres(pool).Dump(ctx, func(profile.Row) error { profiles++; return errStop }); err != nil && !errors.Is(err, errStop) {
		return err
	}
	events, err := log.Count(ctx, eventlog.Query{})
	if err != nil {
		return err
	}
	if len(st.Projects) > 0 || len(hs) > 0 || profiles > 0 || events > 0 {
		return fmt.Errorf("%w (%d projects, %d hooks, profiles: %v, %d events): migrate into an empty database", ErrNotEmpty,
			len(st.Projects), len(hs), profiles > 0, events)
	}
	return nil
}

// copyEvents copies the events and raw requests of dir's log in pages.
func copyEvents(ctx context.Context, dir string, dst LogTarget, rep *MigrateReport, logger *slog.Logger) error {
	src, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, datadir.EventsFile)}, nil, logger)
	if err != nil {
		return err
	}
	defer src.Close()
	var evs []eventlog.StoredEvent
	var cs []eventlog.StoredContent
	flush := func() error {
		if len(evs) == 0 && len(cs) == 0 {
			return nil
		}
		if err := dst.Load(ctx, evs, cs); err != nil {
			return fmt.Errorf("copy events: %w", err)
		}
		evs, cs = evs[:0], cs[:0]
		return nil
	}
	err = src.Dump(ctx, func(e eventlog.StoredEvent) error {
		evs = append(evs, e)
		rep.Events++
		if len(evs) == 5000 {
			return flush()
		}
		return nil
	}, func(c eventlog.StoredContent) error {
		if err := flush(); err != nil { // the events first
			return err
		}
		cs = append(cs, c)
		rep.RawRequests++
		if len(cs) == 500 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

func copyProjects(ctx context.Context, pool *pgxpool.Pool, dir string, rep *MigrateReport) error {
	src, err := project.OpenSQLite(filepath.Join(dir, datadir.StateFile))
	if err != nil {
		return err
	}
	defer src.Close()
	dst := project.NewPostgres(pool)
	st, err := src.Load(ctx)
	if err != nil {
		return err
	}
	for _, p := range st.Projects {
		if err := dst.InsertProject(ctx, p); err != nil {
			return fmt.Errorf("copy project %d: %w", p.ID, err)
		}
		rep.Projects++
	}
	tokens, err := src.AllTokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range tokens {
		if err := dst.InsertToken(ctx, t.Token, t.Hash); err != nil {
			return fmt.Errorf("copy token %s: %w", t.ID, err)
		}
		rep.Tokens++
	}
	for _, et := range st.EventTypes {
		if err := dst.InsertEventType(ctx, et); err != nil {
			return fmt.Errorf("copy event type %s of project %d: %w", et.Slug, et.ProjectID, err)
		}
		rep.EventTypes++
	}
	for _, s := range st.Schemas {
		if err := dst.InsertSchema(ctx, s); err != nil {
			return fmt.Errorf("copy schema %s of project %d: %w", s.Type, s.ProjectID, err)
		}
		rep.Schemas++
	}
	meta, err := src.AllMeta(ctx)
	if err != nil {
		return err
	}
	for k, v := range meta {
		if err := dst.SetMeta(ctx, k, v); err != nil {
			return fmt.Errorf("copy %s: %w", k, err)
		}
		rep.Meta++
	}
	return nil
}

func copyHooks(ctx context.Context, pool *pgxpool.Pool, dir string, rep *MigrateReport) error {
	path := filepath.Join(dir, datadir.HooksFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // never had a hook
	}
	src, err := hook.OpenSQLite(path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := hook.NewPostgres(pool)
	hs, err := src.Hooks(ctx)
	if err != nil {
		return err
	}
	for _, h := range hs {
		st, err := src.Export(ctx, h.ID)
		if err != nil {
			return err
		}
		if err := dst.Import(ctx, st); err != nil {
			return err
		}
		rep.Hooks++
		rep.InFlight += len(st.Inflight)
		rep.Attempts += len(st.Attempts)
		rep.DeadLetters += len(st.DeadLetters)
	}
	return nil
}

func copyProfiles(ctx context.Context, pool *pgxpool.Pool, dir string, rep *MigrateReport) error {
	path := filepath.Join(dir, datadir.ProfileFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	src, err := profile.OpenSQLite(path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := profile.NewPostgres(pool)
	var rows []profile.Row
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		err := dst.Load(ctx, rows)
		rows = rows[:0]
		return err
	}
	err = src.Dump(ctx, func(r profile.Row) error {
		switch {
		case r.Profile != nil:
			rep.Profiles++
		case r.Identity != nil:
			rep.Identities++
		case r.Alias != nil:
			rep.Aliases++
		case r.Observation != nil:
			rep.Observations++
		case r.Cursor != nil:
			rep.Cursors++
		}
		rows = append(rows, r)
		if len(rows) == 5000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
