package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/bench"
)

func runBench(ctx context.Context, args []string, env *Env) error {
	const synopsis = "bench [--url URL] [-c N] [-d DURATION | -n COUNT] [--dialect D] [--payload JSON|@FILE] [--baseline] [--floor sqlite|postgres] [--rate R [--saturation]] [--server-pid PID | --server-dir DIR]"
	fs := newFlags("bench", synopsis, env)
	var cfg bench.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "ingest base URL of the server under load")
	fs.IntVar(&cfg.Connections, "c", 64, "concurrent keep-alive connections")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "measured duration of each run")
	fs.Int64Var(&cfg.Count, "n", 0, "send exactly this many requests instead of running for -d")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured load before each run")
	fs.StringVar(&cfg.Dialect, "dialect", "webhook", "request dialect: "+strings.Join(bench.Dialects, ", "))
	fs.IntVar(&cfg.Batch, "batch", 100, "hits (track-batch), messages (s2s) or purchases (commerce-batch) per request")
	fs.StringVar(&cfg.AppID, "app-id", "", "s2s: the application id (X-Application-Id); --token is the X-API-Key")
	fs.StringVar(&cfg.Slug, "slug", "bench", "s2s: the action event type's slug")
	payload := fs.String("payload", "", "request body (for track: one hit), or @file to read it from a file (default: a ~500-byte call-tracker postback; the track seed's example hit)")
	project := fs.Uint("project", 0, "project id")
	fs.StringVar(&cfg.Token, "token", "", "project token (required for track, s2s and commerce)")
	fs.BoolVar(&cfg.Baseline, "baseline", false, "also load a bare net/http handler in this process, the same way, and print the ratio")
	fs.StringVar(&cfg.Floor, "floor", "", "also load a durable floor server in this process and print the ratio: "+strings.Join(bench.Floors, ", ")+" (the bare handler plus group commit of the body)")
	fs.StringVar(&cfg.FloorDir, "floor-dir", ".", "where the sqlite floor keeps its database: put it on the disk of the server's data directory")
	floorDSN := fs.String("floor-dsn", "", "the database of the postgres floor, the server's own (default $SLUICE_POSTGRES_DSN); it gets a table of its own for the run")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "alternate target and baseline runs this many times")
	fs.Float64Var(&cfg.Rate, "rate", 0, "pace the target at this many requests per second (an open loop) instead of as fast as it answers")
	fs.BoolVar(&cfg.Saturation, "saturation", false, "with --rate: also load the target unpaced after each paced run and print the ratio of their server CPU per event")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "the target server's process id: report the CPU time it used during each run (from /proc) and its CPU per event")
	serverDir := fs.String("server-dir", "", "the target server's data directory: its run.json names the process (instead of --server-pid)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	serveBaseline := fs.String("serve-baseline", "", "only serve the bare baseline handler on this address (for another load tool) until interrupted")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if problem := positional(pos, 0, 0, ""); problem != "" {
		return badArgs(env, fs, problem)
	}
	if *serveBaseline != "" {
		fmt.Fprintf(env.Stdout, "baseline handler on http://%s/ (reads the body, answers 200); Ctrl-C to stop\n", *serveBaseline)
		return bench.ServeBaseline(ctx, *serveBaseline)
	}
	if *project > 1<<32-1 {
		return fmt.Errorf("--project %d is above 4294967295", *project)
	}
	cfg.Project = uint32(*project)
	cfg.FloorDSN = *floorDSN
	if cfg.FloorDSN == "" {
		cfg.FloorDSN = env.Getenv("SLUICE_POSTGRES_DSN")
	}
	if cfg.Rate < 0 {
		return fmt.Errorf("--rate %g is negative", cfg.Rate)
	}
	if cfg.Saturation && cfg.Rate == 0 {
		return fmt.Errorf("--saturation compares a paced run with an unpaced one: give --rate too")
	}
	if *serverDir != "" {
		if cfg.ServerPID != 0 {
			return fmt.Errorf("--server-pid and --server-dir both name the server: give one")
		}
		pid, err := bench.ServerPID(*serverDir)
		if err != nil {
			return err
		}
		cfg.ServerPID = pid
	}
	if cfg.ServerPID != 0 {
		if _, err := bench.ProcessCPU(cfg.ServerPID); err != nil {
			return err
		}
	}
	if p, ok := strings.CutPrefix(*payload, "@"); ok {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		cfg.Payload = b
	} else if *payload != "" {
		cfg.Payload = []byte(*payload)
	}
	results, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", b)
		return nil
	}
	bench.Report(env.Stdout, cfg, results)
	return nil
}
