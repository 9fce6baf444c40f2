// Package cli is the sluice command line: serve, project, token, events,
// bench, admin-token and migrate.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/config"
)

// Env is the process environment a command runs in.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Environ        []string
}

// OSEnv is the real process environment.
func OSEnv() *Env {
	return &Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Environ: os.Environ()}
}

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, env *Env) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (ingest and admin listeners)", runServe},
		{"project", "create, list, show, update or delete projects", runProject},
		{"token", "create, list or revoke a project's API tokens", runToken},
		{"event-type", "create, list or delete a project's s2s event types", runEventType},
		{"hook", "manage action hooks: create, list, stop, activate, test, replay dead letters…", runHook},
		{"events", "read stored events: events tail [--follow]", runEvents},
		{"profile", "look a person up, read their timeline, erase them", runProfile},
		{"bench", "load a server over loopback and report events/s and latency", runBench},
		{"hash", "print the SHA-256 sluice stores for a phone number or e-mail", runHash},
		{"admin-token", "reset the admin token (server stopped)", runAdminToken},
		{"migrate", "bring the PostgreSQL schema up to date; --from DATA_DIR copies a SQLite installation into it", runMigrate},
		{"version", "print the version", func(ctx context.Context, args []string, env *Env) error {
			fmt.Fprintln(env.Stdout, "sluice", app.BuildVersion())
			return nil
		}},
	}
}

// errUsage means the usage was printed; exit 2 without more output.
var errUsage = errors.New("usage")

// Main runs the command line and returns the exit code.
//
// Help that was asked for (-h, -help or --help anywhere before a "--", or
// `sluice help`) is printed on stdout and exits 0; usage printed because of
// a mistake goes to stderr and exits 2.
func Main(ctx context.Context, args []string, env *Env) int {
	if len(args) == 0 {
		usage(env.Stderr)
		return 2
	}
	if args[0] == "help" || isHelp(args[0]) {
		usage(env.Stdout)
		return 0
	}
	helpAsked := false
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		helpAsked = helpAsked || isHelp(a)
	}
	if helpAsked {
		e := *env
		e.Stderr = env.Stdout
		env = &e
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], env)
			switch {
			case err == nil:
				return 0
			case helpAsked && (errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp)):
				return 0
			case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
				return 2
			default:
				fmt.Fprintf(env.Stderr, "sluice %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(env.Stderr, "sluice: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return 2
}

// isHelp reports whether a command-line argument asks for help.
func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("sluice — server-to-server event gateway\n\nUsage: sluice <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-12s %s\n", c.name, c.usage)
	}
	b.WriteString("\nRun 'sluice <command> -h' for a command's flags.\n")
	_, _ = io.WriteString(w, b.String())
}

// badArgs says what is wrong with a command's arguments, then prints its
// usage: exit 2.
func badArgs(env *Env, fs *flag.FlagSet, reason string) error {
	fmt.Fprintf(env.Stderr, "%s: %s\n\n", fs.Name(), reason)
	fs.Usage()
	return errUsage
}

// positional checks the count of a command's positional arguments: what
// names the ones it takes ("the project ID").
func positional(pos []string, lo, hi int, what string) string {
	switch {
	case len(pos) < lo:
		return "needs " + what
	case len(pos) > hi && hi == 0:
		return fmt.Sprintf("takes no arguments (got %q)", pos)
	case len(pos) > hi:
		return fmt.Sprintf("takes only %s (got %q too)", what, pos[hi:])
	}
	return ""
}

// newFlags makes a flag set that prints its usage to env.Stderr.
func newFlags(name, synopsis string, env *Env) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func runServe(ctx context.Context, args []string, env *Env) error {
	cfg, err := config.Load("serve", args, env.Getenv, env.Environ, env.Stderr)
	var ue config.UsageError
	if errors.As(err, &ue) {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(env.Stderr, "sluice serve: %v\n", err)
		}
		fmt.Fprintf(env.Stderr, "Usage: sluice serve [flags]\n\nEvery flag can also be set as SLUICE_<NAME> or in the --config YAML file.\n\nFlags:\n")
		config.PrintUsage(env.Stderr, ue.FlagSet)
		return errUsage
	}
	if err != nil {
		return err
	}
	logger := app.NewLogger(cfg.LogLevel, cfg.LogFormat, env.Stderr)
	return app.Run(ctx, cfg, env.Stdout, logger)
}

func runAdminToken(ctx context.Context, args []string, env *Env) error {
	fs := newFlags("admin-token", "admin-token reset [--data-dir DIR]", env)
	var t target
	t.register(fs, env)
	if len(args) == 0 || args[0] != "reset" {
		switch {
		case len(args) == 0:
			fmt.Fprintf(env.Stderr, "sluice admin-token: needs a subcommand: reset\n\n")
		case !isHelp(args[0]):
			fmt.Fprintf(env.Stderr, "sluice admin-token: unknown subcommand %q\n", args[0])
		}
		fs.Usage()
		return errUsage
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if storage, err := storageOf(env); err != nil {
		return err
	} else if storage == config.StoragePostgres {
		return resetAdminTokenPostgres(ctx, env)
	}
	// Any token will do to learn that a server holds the directory: the
	// reset is refused then, whatever the token.
	anyToken := func(k string) string {
		if k == config.EnvAdminToken {
			return "-"
		}
		return ""
	}
	c, err := (&target{dataDir: t.dataDir}).open(&Env{Getenv: anyToken}, reads)
	var nd noDataDir
	var ns noState
	if errors.As(err, &nd) || errors.As(err, &ns) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (stop the server first: the admin token can only be reset offline)", err)
	}
	defer c.Close()
	l, ok := c.(*local)
	if !ok {
		return fmt.Errorf("a server is running on %s: stop it first (the admin token can only be reset offline)", t.dataDir)
	}
	tok, err := app.ResetAdminToken(ctx, l.state)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "new admin token (shown once; only its SHA-256 is stored):\n  export %s=%s\n", config.EnvAdminToken, tok)
	return nil
}

// resetAdminTokenPostgres resets the admin token of a cluster, in the
// database of SLUICE_POSTGRES_DSN (and the rest of the environment and
// SLUICE_CONFIG, as serve reads them). The nodes read the token's hash
// at start: stop them all first, start them after.
func resetAdminTokenPostgres(ctx context.Context, env *Env) error {
	cfg, err := config.Load("admin-token", nil, env.Getenv, env.Environ, io.Discard)
	if err != nil {
		return err
	}
	st, err := app.OpenStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	tok, err := app.ResetAdminToken(ctx, st.State)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "new admin token of the cluster (shown once; only its SHA-256 is stored; restart every node):\n  export %s=%s\n", config.EnvAdminToken, tok)
	return nil
}
