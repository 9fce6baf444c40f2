package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/eventlog/postgres"
	"github.com/sluicehq/sluice/internal/pgmigrate"
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
