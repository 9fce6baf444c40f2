package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// runEvents is `sluice events tail`: print stored events as NDJSON, one
// canonical event per line, in log order.
//
// Without --follow it prints what is stored (from --after or --since, else
// from the start) and exits. With --follow it prints the --last newest
// matching events (10 by default, like tail -f; unless --after or --since
// says where to start) and keeps printing new events until interrupted.
func runEvents(ctx context.Context, args []string, env *Env) error {
	const synopsis = "events tail [--follow] [--last N] [--project N] [--key GLOB] [--since T] [--after ID] [-n N]"
	if len(args) == 0 || args[0] != "tail" {
		if len(args) > 0 && !isHelp(args[0]) {
			fmt.Fprintf(env.Stderr, "sluice events: unknown command %q\n", args[0])
		}
		fmt.Fprintf(env.Stderr, "Usage: sluice events <command> [flags]\n\nCommands:\n"+
			"  tail [--follow] [--last N] [--project N] [--key GLOB] [--since T] [--after ID] [-n N]\n"+
			"        print stored events as NDJSON, in log order; --follow keeps printing new ones\n\n"+
			"Run 'sluice events tail -h' for its flags.\n")
		return errUsage
	}
	fs := newFlags("events tail", synopsis, env)
	var t target
	t.register(fs, env)
	follow := fs.Bool("follow", false, "keep printing new events as they are stored")
	fs.BoolVar(follow, "f", false, "short for --follow")
	var projects listFlag
	fs.Var(&projects, "project", "only this project (repeatable, or comma-separated)")
	key := fs.String("key", "", "only keys matching this glob, e.g. 'in.gen.crm.*'")
	since := fs.String("since", "", "only events at or after this time: RFC 3339, Unix ms, or a duration ago such as 15m")
	after := fs.String("after", "", "start after this event id")
	n := fs.Int("n", 0, "stop after this many events (0: no limit)")
	var last optInt
	fs.Var(&last, "last", "start with the `N` newest matching events (default: 10 with --follow and neither --after nor --since, else all of them)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if problem := positional(pos, 0, 0, ""); problem != "" {
		return badArgs(env, fs, problem)
	}
	q := eventlog.Query{KeyGlob: *key, Limit: 1000}
	for _, p := range projects {
		for _, s := range strings.Split(p, ",") {
			id, err := parseProjectID(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			q.Projects = append(q.Projects, id)
		}
	}
	if *since != "" {
		if q.Since, err = parseSince(*since, time.Now()); err != nil {
			return err
		}
	}
	if *after != "" {
		if q.After, err = event.ParseID(*after); err != nil {
			return fmt.Errorf("--after: %w", err)
		}
	}
	if err := q.Normalize(); err != nil {
		return err
	}
	if *n < 0 {
		return errors.New("-n must be 0 (no limit) or more")
	}
	c, err := t.open(env, reads)
	if err != nil {
		return err
	}
	defer c.Close()
	if *follow && !c.Live() {
		return errors.New("--follow needs a running server; none holds the data directory")
	}
	if !last.set && *follow && *after == "" && *since == "" {
		last = optInt{set: true, v: 10}
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	printed := 0
	if last.set {
		if last.v < 0 || last.v > eventlog.MaxLimit {
			return fmt.Errorf("--last must be from 0 to %d", eventlog.MaxLimit)
		}
		// The newest first, then on from the last of them: every event
		// after it comes next, so none is missed. When none matched, on
		// from where we were (nothing up to the head matches); --last 0
		// only wants what comes after the head.
		first := q
		first.Newest, first.Limit = true, max(last.v, 1)
		p, err := c.Events(ctx, first, 0)
		if err != nil {
			return err
		}
		switch {
		case last.v == 0:
			q.After = max(q.After, p.Head)
		case len(p.Events) > 0:
			q.After = p.Next
		}
		for _, e := range p.Events[:min(last.v, len(p.Events))] {
			out.Write(e)
			out.WriteByte('\n')
			printed++
			if *n > 0 && printed >= *n {
				return out.Flush()
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if !*follow {
			return nil
		}
	}
	down := false
	for {
		wait := time.Duration(0)
		if *follow {
			wait = 30 * time.Second
		}
		if down {
			next, try := t.rediscover(env, c)
			if !try {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				continue
			}
			c = next
		}
		p, err := c.Events(ctx, q, wait)
		var un *unreachable
		switch {
		case err != nil && ctx.Err() != nil:
			return nil // interrupted
		case err != nil && *follow && errors.As(err, &un):
			// The server stopped or is restarting: wait for it and go
			// on after the last event printed, so none is missed or
			// printed twice.
			if !down {
				fmt.Fprintf(env.Stderr, "sluice events: no answer from the server (%v); trying again every second, to go on where it stopped (Ctrl-C stops)\n", err)
				down = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		case err != nil:
			return err
		}
		if down {
			fmt.Fprintln(env.Stderr, "sluice events: the server answers again")
			down = false
		}
		for _, e := range p.Events {
			out.Write(e)
			out.WriteByte('\n')
			printed++
			if *n > 0 && printed >= *n {
				return out.Flush()
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		q.After = p.Next
		if len(p.Events) < q.Limit && !*follow {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// parseSince reads RFC 3339, Unix milliseconds, or a duration before now.
func parseSince(s string, now time.Time) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UnixMilli(), nil
	}
	return 0, fmt.Errorf("--since %q is not an RFC 3339 time, Unix ms or a duration", s)
}

// optInt is an integer flag that remembers whether it was given.
type optInt struct {
	set bool
	v   int
}

func (o *optInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func (o *optInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	o.set, o.v = true, v
	return nil
}
