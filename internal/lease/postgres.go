package lease

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the PostgreSQL schema of the leases.
var Migrations = pgmigrate.Component{Name: "leases", FS: mustSub(migrations, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Postgres keeps leases in PostgreSQL (its schema is Migrations); expiry
// is by the database's clock.
type Postgres struct {
	db *pgxpool.Pool
}

var _ Leaser = (*Postgres)(nil)

// NewPostgres keeps leases in db (migrated).
func NewPostgres(db *pgxpool.Pool) *Postgres { return &Postgres{db: db} }

func (p *Postgres) Acquire(ctx context.Context, holder string, ttl time.Duration, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, _ := p.db.Query(ctx, `INSERT INTO leases (name, holder, expires_at)
		SELECT n, $2, now() + $3 * interval '1 microsecond' FROM unnest($1::text[]) AS n
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at < now()
		RETURNING name`, names, holder, ttl.Microseconds())
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("acquire leases: %w", err)
	}
	return held, nil
}

func (p *Postgres) Release(ctx context.Context, holder string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := p.db.Exec(ctx, `DELETE FROM leases WHERE holder = $1 AND name = ANY($2)`, holder, names); err != nil {
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

func (p *Postgres) Holders(ctx context.Context, prefix string) (int, error) {
	var n int
	err := p.db.QueryRow(ctx, `SELECT count(DISTINCT holder) FROM leases WHERE starts_with(name, $1) AND expires_at >= now()`, prefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count lease holders: %w", err)
	}
	return n, nil
}
