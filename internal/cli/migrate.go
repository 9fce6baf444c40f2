package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/datadir"
)

// runMigrate is `sluice migrate [--from DATA_DIR]`: it brings the
// PostgreSQL schema up to date (as every node does at start), and with
// --from copies a SQLite installation into it.
func runMigrate(ctx context.Context, args []string, env *Env) error {
	from, rest, err := fromFlag(args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sluice migrate: %v\n", err)
		return errUsage
	}
	cfg, err := config.Load("migrate", rest, env.Getenv, env.Environ, env.Stderr)
	var ue config.UsageError
	if errors.As(err, &ue) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(env.Stderr, "sluice migrate: %v\n", err)
		}
		fmt.Fprintf(env.Stderr, "Usage: sluice migrate [--from DATA_DIR] [flags]\n\n"+
			"Brings the PostgreSQL database of --postgres-dsn (SLUICE_POSTGRES_DSN) to this binary's schema; with\n"+
			"--from, first copies the SQLite installation in DATA_DIR (no server may run on it) into it, which must\n"+
			"hold no sluice data yet. The serve flags below are read for the database (and its pool settings).\n\n"+
			"Flags:\n  --from DATA_DIR\n\tthe data directory of a SQLite installation to copy\n")
		config.PrintUsage(env.Stderr, ue.FlagSet)
		return errUsage
	}
	if err != nil {
		return err
	}
	if cfg.Postgres.DSN == "" {
		return errors.New("no database: set postgres.dsn (--postgres-dsn, or better SLUICE_POSTGRES_DSN: ps shows flags)")
	}
	logger := app.NewLogger(cfg.LogLevel, cfg.LogFormat, env.Stderr)
	if from == "" {
		if err := app.Migrate(ctx, cfg); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "the PostgreSQL schema is up to date")
		return nil
	}
	rep, err := app.MigrateDataDir(ctx, cfg, from, logger)
	if err != nil {
		if rep != nil {
			return fmt.Errorf("%w (copied before the error: %d events, %d projects, %d hooks, %d profiles; empty the database before trying again)",
				err, rep.Events, rep.Projects, rep.Hooks, rep.Profiles)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "copied %s into PostgreSQL:\n", from)
	fmt.Fprintf(env.Stdout, "  events       %d (raw requests %d)\n", rep.Events, rep.RawRequests)
	fmt.Fprintf(env.Stdout, "  projects     %d (tokens %d, event types %d, schemas %d, meta values %d)\n", rep.Projects, rep.Tokens, rep.EventTypes, rep.Schemas, rep.Meta)
	fmt.Fprintf(env.Stdout, "  hooks        %d (batches in flight %d, attempts %d, dead letters %d)\n", rep.Hooks, rep.InFlight, rep.Attempts, rep.DeadLetters)
	fmt.Fprintf(env.Stdout, "  profiles     %d (identities %d, aliases %d, observations %d; consumer cursors %d)\n", rep.Profiles, rep.Identities, rep.Aliases, rep.Observations, rep.Cursors)
	fmt.Fprintf(env.Stdout, "Hook secrets stay sealed with %s/%s: copy it into the data directory of every node before it starts with storage postgres.\n", strings.TrimSuffix(from, "/"), datadir.HooksKey)
	return nil
}

// fromFlag takes --from DIR (or --from=DIR, -from) out of args.
func fromFlag(args []string) (from string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "from" {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return "", nil, errors.New("--from needs a data directory")
			}
			i++
			val = args[i]
		}
		if val == "" {
			return "", nil, errors.New("--from needs a data directory")
		}
		from = val
	}
	return from, rest, nil
}
