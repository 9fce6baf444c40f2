package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/admin"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
)

const hookSynopsis = `hook <command> [flags] [ID]

Commands:
  list                          the hooks
  show ID                       one hook
  create --file F | --url U --events G[,G…] [--name N] [--project P] [--filter E] [--inactive] [--start-from now|RFC3339]
  update ID --file F            replace the definition (place, state and secrets kept)
  activate ID [--from now|RFC3339]   resume from its place, or from now, or from a time
  stop ID | clone ID | delete ID | rotate-secret ID
  test ID [--sample F]          send one is_test message now and show what was sent and answered
  deliveries ID [--limit N]     the attempt log
  dead-letters ID [--since T] [--until T]
  replay ID [DEAD_LETTER_ID] [--since T] [--until T]   send parked batches again, once

A definition file is YAML or JSON with the fields of docs/hooks.md.
Hooks live in the running server: these commands use its admin API.`

// hookCommands maps each command to the least and most positional
// arguments it takes (an ID, and for replay a dead letter).
var hookCommands = map[string][2]int{
	"list": {0, 0}, "show": {1, 1}, "create": {0, 0}, "update": {1, 1}, "activate": {1, 1}, "stop": {1, 1},
	"clone": {1, 1}, "delete": {1, 1}, "rotate-secret": {1, 1}, "test": {1, 1}, "deliveries": {1, 1},
	"dead-letters": {1, 1}, "replay": {1, 2},
}

// hookFlags are the flags of every hook command (each registers its own).
type hookFlags struct {
	file, startFrom, from, sample, since, until string
	name, url, events, project, filter          string
	inactive, json                              bool
	limit                                       int
}

func runHook(ctx context.Context, args []string, env *Env) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n", hookSynopsis)
		return errUsage
	}
	sub, args := args[0], args[1:]
	nargs, ok := hookCommands[sub]
	if !ok {
		fmt.Fprintf(env.Stderr, "sluice hook: unknown command %q\nUsage: sluice %s\n", sub, hookSynopsis)
		return errUsage
	}
	fs := newFlags("hook "+sub, hookSynopsis, env)
	var t target
	t.register(fs, env)
	var f hookFlags
	fs.BoolVar(&f.json, "json", false, "print the API's JSON answer")
	switch sub {
	case "create":
		fs.StringVar(&f.file, "file", "", "definition file, YAML or JSON (- for stdin)")
		fs.StringVar(&f.name, "name", "", "name (default: the URL)")
		fs.StringVar(&f.url, "url", "", "an http hook's target URL, for a hook without a file")
		fs.StringVar(&f.events, "events", "", "comma-separated key globs, e.g. in.s2s.revenue.*")
		fs.StringVar(&f.project, "project", "", "the project it covers (default: every project)")
		fs.StringVar(&f.filter, "filter", "", "an expr-lang filter over event and profile")
		fs.BoolVar(&f.inactive, "inactive", false, "create it stopped")
		fs.StringVar(&f.startFrom, "start-from", "", `"now" (default) or an RFC 3339 time to backfill from`)
	case "update":
		fs.StringVar(&f.file, "file", "", "definition file, YAML or JSON (- for stdin); required")
	case "activate":
		fs.StringVar(&f.from, "from", "", `"now" or an RFC 3339 time (default: resume from the hook's place)`)
	case "test":
		fs.StringVar(&f.sample, "sample", "", "a canonical event (JSON file, - for stdin) to test with")
	case "deliveries":
		fs.IntVar(&f.limit, "limit", 20, "how many attempts, newest first (1–1000)")
	case "dead-letters", "replay":
		fs.StringVar(&f.since, "since", "", "only those parked at or after this RFC 3339 time")
		fs.StringVar(&f.until, "until", "", "only those parked before this RFC 3339 time")
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	what := "the hook ID"
	if sub == "replay" {
		what = "the hook ID and at most one dead letter ID"
	}
	if problem := positional(pos, nargs[0], nargs[1], what); problem != "" {
		return badArgs(env, fs, problem)
	}
	r, err := t.server(env, "hooks are delivered by the running server, so they are managed through its admin API")
	if err != nil {
		return err
	}
	defer r.Close()
	path := "/api/v1/hooks"
	if len(pos) > 0 {
		path += "/" + url.PathEscape(pos[0])
	}
	switch sub {
	case "list":
		return hookList(ctx, r, env, f)
	case "delete":
		if err := r.call(ctx, "DELETE", path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "hook %s deleted, with its dead letters and attempt log\n", pos[0])
		return nil
	case "show", "stop", "clone", "rotate-secret", "create", "update", "activate":
		method, body := "POST", any(nil)
		switch sub {
		case "show":
			method = "GET"
		case "stop", "clone", "rotate-secret":
			path += "/" + sub
		case "activate":
			path, body = path+"/activate", admin.ActivateBody{From: f.from}
		case "create":
			if body, err = f.createBody(env); err != nil {
				return err
			}
		case "update":
			if f.file == "" {
				return errors.New("update needs --file with the whole definition")
			}
			var h hook.Hook
			if err := readHookFile(f.file, &h); err != nil {
				return err
			}
			method, body = "PUT", h
		}
		var h hook.Hook
		if err := r.call(ctx, method, path, body, &h); err != nil {
			return err
		}
		if f.json || sub == "show" {
			return printJSON(env, h)
		}
		return printHookChange(env, sub, h)
	case "test":
		return hookTest(ctx, r, env, path, f)
	case "deliveries":
		return hookDeliveries(ctx, r, env, path, f)
	case "dead-letters":
		return hookDeadLetters(ctx, r, env, path, f)
	default: // replay
		path += "/dead-letters/replay" + timeRange(f.since, f.until)
		if len(pos) == 2 {
			path = "/api/v1/hooks/" + url.PathEscape(pos[0]) + "/dead-letters/" + url.PathEscape(pos[1]) + "/replay"
		}
		return hookReplay(ctx, r, env, path, f)
	}
}

// createBody is create's request: the file, or the quick flags, with the
// flags given winning over the file.
func (f hookFlags) createBody(env *Env) (admin.HookBody, error) {
	b := admin.HookBody{StartFrom: f.startFrom}
	switch {
	case f.file != "":
		if err := readHookFile(f.file, &b.Hook); err != nil {
			return b, err
		}
	case f.url != "":
		b.Hook = hook.Hook{Active: true, Type: httpsink.Type, Settings: &httpsink.Settings{}}
		if err := destinations().Resolve(&b.Hook); err != nil {
			return b, err
		}
	default:
		return b, errors.New("give --file, or --url and --events")
	}
	if f.url != "" {
		s, ok := b.Hook.Settings.(*httpsink.Settings)
		if !ok {
			return b, fmt.Errorf("--url is for http hooks; the file's is a %s hook", b.Hook.Type)
		}
		s.URL = f.url
	}
	if f.name != "" {
		b.Hook.Name = f.name
	}
	if b.Hook.Name == "" {
		b.Hook.Name = f.url
	}
	if f.filter != "" {
		b.Hook.Filter = f.filter
	}
	if f.events != "" {
		b.Hook.Events = splitComma(f.events)
	}
	if f.project != "" {
		p, err := parseProjectID(f.project)
		if err != nil {
			return b, err
		}
		b.Hook.ProjectID = &p
	}
	if f.inactive {
		b.Hook.Active = false
	}
	return b, nil
}

func hookList(ctx context.Context, r *remote, env *Env, f hookFlags) error {
	var l admin.HookList
	if err := r.call(ctx, "GET", "/api/v1/hooks", nil, &l); err != nil {
		return err
	}
	if f.json {
		return printJSON(env, l)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tACTIVE\tPROJECT\tEVENTS\tTARGET\tSTOPPED BECAUSE")
	for _, h := range l.Hooks {
		project := "all"
		if h.ProjectID != nil {
			project = strconv.FormatUint(uint64(*h.ProjectID), 10)
		}
		target := h.Type
		if destinations().Resolve(&h) == nil {
			if s, ok := h.Settings.(*httpsink.Settings); ok {
				target = s.URL
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", h.ID, h.Name, h.Active, project, strings.Join(h.Events, ","), target, h.StoppedReason)
	}
	return tw.Flush()
}

func printHookChange(env *Env, verb string, h hook.Hook) error {
	state := "active"
	if !h.Active {
		state = "stopped"
	}
	done := map[string]string{"create": "created", "update": "updated", "activate": "activated", "stop": "stopped",
		"clone": "created as a copy", "rotate-secret": "secret rotated"}[verb]
	if verb == "stop" { // "stopped" says the state
		fmt.Fprintf(env.Stdout, "hook %s (%s): %s\n", h.ID, h.Name, done)
	} else {
		fmt.Fprintf(env.Stdout, "hook %s (%s): %s, %s\n", h.ID, h.Name, done, state)
	}
	if h.SigningSecret != "" {
		fmt.Fprintf(env.Stdout, "signing secret (shown once; give it to the receiver): %s\n", h.SigningSecret)
	}
	return nil
}

func hookTest(ctx context.Context, r *remote, env *Env, path string, f hookFlags) error {
	var b admin.TestBody
	if f.sample != "" {
		raw, err := readInput(f.sample)
		if err != nil {
			return err
		}
		if !json.Valid(raw) {
			return fmt.Errorf("%s is not JSON", f.sample)
		}
		b.Sample = raw
	}
	var res hook.TestResult
	if err := r.call(ctx, "POST", path+"/test", b, &res); err != nil {
		return err
	}
	if f.json {
		if err := printJSON(env, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.Stdout, "event: %s\ndelivered: %v\nstatus: %d\nlatency: %.1f ms\n", res.Event, res.Delivered, res.Status, res.LatencyMs)
		if res.Error != "" {
			fmt.Fprintf(env.Stdout, "error: %s\n", res.Error)
		}
		if res.Request != nil {
			req, _ := json.MarshalIndent(res.Request, "", "  ")
			fmt.Fprintf(env.Stdout, "request:\n%s\n", req)
		}
		fmt.Fprintf(env.Stdout, "response:\n%s\n", res.Response)
	}
	if !res.Delivered {
		return errors.New("the target did not accept the test message")
	}
	return nil
}

func hookDeliveries(ctx context.Context, r *remote, env *Env, path string, f hookFlags) error {
	var d struct {
		Deliveries []hook.Delivery `json:"deliveries"`
	}
	if err := r.call(ctx, "GET", path+"/deliveries?limit="+strconv.Itoa(f.limit), nil, &d); err != nil {
		return err
	}
	if f.json {
		return printJSON(env, d)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tBATCH\tKIND\tATTEMPT\tEVENTS\tSTATUS\tERROR\tNEXT")
	for _, x := range d.Deliveries {
		next := ""
		if x.NextAttemptAt != nil {
			next = x.NextAttemptAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", x.StartedAt.Format(time.RFC3339), x.BatchID, x.Kind, x.Attempt, x.Events, x.Status, x.Error, next)
	}
	return tw.Flush()
}

func hookDeadLetters(ctx context.Context, r *remote, env *Env, path string, f hookFlags) error {
	var d struct {
		DeadLetters []hook.DeadLetter `json:"dead_letters"`
	}
	if err := r.call(ctx, "GET", path+"/dead-letters"+timeRange(f.since, f.until), nil, &d); err != nil {
		return err
	}
	if f.json {
		return printJSON(env, d)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPARKED\tBATCH\tEVENTS\tATTEMPTS\tLAST STATUS\tLAST ERROR")
	for _, x := range d.DeadLetters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\n", x.ID, x.CreatedAt.Format(time.RFC3339), x.BatchID, x.Events, x.Attempts, x.LastStatus, x.LastError)
	}
	return tw.Flush()
}

func hookReplay(ctx context.Context, r *remote, env *Env, path string, f hookFlags) error {
	var res struct {
		Replayed []hook.ReplayResult `json:"replayed"`
	}
	if err := r.call(ctx, "POST", path, nil, &res); err != nil {
		return err
	}
	failed := 0
	for _, x := range res.Replayed {
		if !x.Delivered {
			failed++
		}
	}
	if f.json {
		if err := printJSON(env, res); err != nil {
			return err
		}
	} else {
		for _, x := range res.Replayed {
			state := "delivered"
			if !x.Delivered {
				state = "failed, still parked: " + x.Error
			}
			fmt.Fprintf(env.Stdout, "dead letter %d (batch %s): %s\n", x.ID, x.BatchID, state)
		}
		fmt.Fprintf(env.Stdout, "%d replayed: %d delivered, %d still parked\n", len(res.Replayed), len(res.Replayed)-failed, failed)
	}
	if failed > 0 {
		return fmt.Errorf("%d dead letters could not be delivered", failed)
	}
	return nil
}

func timeRange(since, until string) string {
	v := url.Values{}
	if since != "" {
		v.Set("since", since)
	}
	if until != "" {
		v.Set("until", until)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readInput reads a file, or stdin for "-".
func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// readHookFile decodes a definition in YAML or JSON, refusing unknown
// fields.
func readHookFile(name string, h *hook.Hook) error {
	raw, err := readInput(name)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// The settings of its type, typed as the server reads them.
	if err := destinations().Resolve(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// destinations are the delivery types the server knows.
func destinations() *hook.Destinations {
	d, err := hook.NewDestinations(app.Destinations())
	if err != nil {
		panic(err) // app's registry is written out: a test keeps it valid
	}
	return d
}
