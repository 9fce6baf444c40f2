package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicehq/sluice/internal/admin"
	"github.com/sluicehq/sluice/internal/project"
)

// parseArgs parses flags that may come before or after positional
// arguments, and returns the positionals. A mistake is errUsage: the flag
// package has printed it, with the usage.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseProjectID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("project id %q is not a non-negative integer below 4294967296", s)
	}
	return uint32(n), nil
}

func printJSON(env *Env, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
	return err
}

// optBool is a boolean flag that remembers whether it was given.
type optBool struct {
	set, v bool
}

func (o *optBool) String() string   { return strconv.FormatBool(o.v) }
func (o *optBool) IsBoolFlag() bool { return true }
func (o *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	o.set, o.v = true, v
	return err
}

// optString is a string flag that knows whether it was given.
type optString struct {
	set bool
	v   string
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(s string) error { o.set, o.v = true, s; return nil }

// optID is a project id flag that remembers whether it was given (its
// zero value prints no default in the usage).
type optID struct {
	set bool
	v   uint32
}

func (o *optID) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(uint64(o.v), 10)
}

func (o *optID) Set(s string) error {
	v, err := parseProjectID(s)
	o.set, o.v = err == nil, v
	return err
}

// settingsFlags are the project settings a command line can set.
type settingsFlags struct {
	raw           string
	webhookAuth   string
	dedupField    optString
	redirectHosts listFlag
	clearHosts    bool
	appID         string
	region        string
	hashPII       optBool
	s2s           optBool
}

func (s *settingsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.raw, "settings", "", `settings as JSON, e.g. '{"webhook_auth":"token"}' (replaces them whole)`)
	fs.StringVar(&s.webhookAuth, "webhook-auth", "", "webhook authentication: none or token")
	fs.Var(&s.dedupField, "webhook-dedup-field", "data field whose value deduplicates webhook events, e.g. order_id (\"\" to stop)")
	fs.Var(&s.redirectHosts, "redirect-host", "host /redir may send to: example.com or *.example.com (repeatable)")
	fs.BoolVar(&s.clearHosts, "clear-redirect-hosts", false, "remove every redirect host")
	fs.StringVar(&s.appID, "app-id", "", "application id s2s senders send as X-Application-Id (default: generated)")
	fs.StringVar(&s.region, "default-region", "", "region of phone numbers without a country code, e.g. IR")
	fs.Var(&s.hashPII, "hash-pii", "store phone numbers and e-mail addresses only as SHA-256 (--hash-pii=false to stop)")
	fs.Var(&s.s2s, "s2s", "serve the s2s dialect (--s2s=false switches it off)")
}

func (s *settingsFlags) set() bool {
	return s.raw != "" || s.webhookAuth != "" || s.dedupField.set || len(s.redirectHosts) > 0 || s.clearHosts ||
		s.appID != "" || s.region != "" || s.hashPII.set || s.s2s.set
}

// apply returns base changed by the flags.
func (s *settingsFlags) apply(base project.Settings) (project.Settings, error) {
	if s.raw != "" {
		st, err := project.DecodeSettings([]byte(s.raw))
		if err != nil {
			return base, err
		}
		base = st
	}
	if s.webhookAuth != "" {
		base.WebhookAuth = s.webhookAuth
	}
	if s.dedupField.set {
		base.WebhookDedupField = s.dedupField.v
	}
	if s.clearHosts {
		base.RedirectHosts = nil
	}
	base.RedirectHosts = append(base.RedirectHosts, s.redirectHosts...)
	if s.appID != "" {
		base.AppID = s.appID
	}
	if s.region != "" {
		base.DefaultRegion = s.region
	}
	if s.hashPII.set {
		base.HashPII = s.hashPII.v
	}
	if s.s2s.set {
		v := s.s2s.v
		base.S2S = &v
	}
	return base, base.Validate()
}

// argsIf is 1 when a command takes one positional argument, else 0.
func argsIf(takes bool) int {
	if takes {
		return 1
	}
	return 0
}

// accessFor is writes for a command that may prepare a new data
// directory (a create), else reads: the others need a state to change.
func accessFor(changes bool) access {
	if changes {
		return writes
	}
	return reads
}

func runProject(ctx context.Context, args []string, env *Env) error {
	const synopsis = `project <command> [flags] [ID]

Commands:
  create --name N [--id N] [settings flags]   a new project; prints its id and application id
  list                                        the projects
  show ID                                     one project and its settings
  update ID [--name N] [settings flags]       change the name or the settings given
  delete ID                                   remove a project and its tokens (not project 0, nor one
                                              that hooks are scoped to); its events stay until
                                              retention removes them

Settings flags: --webhook-auth, --webhook-dedup-field, --redirect-host,
--clear-redirect-hosts, --app-id, --default-region, --hash-pii, --s2s, or
--settings JSON. Run 'sluice project create -h' for every flag.`
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n", synopsis)
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags("project "+sub, synopsis, env)
	var t target
	t.register(fs, env)
	asJSON := fs.Bool("json", false, "print JSON")
	var sf settingsFlags
	var name string
	var id optID
	switch sub {
	case "create":
		fs.StringVar(&name, "name", "", "project name (required)")
		fs.Var(&id, "id", "the project's `id` (default: the next free one)")
		sf.register(fs)
	case "update":
		fs.StringVar(&name, "name", "", "new name")
		sf.register(fs)
	case "list", "show", "delete":
	default:
		fmt.Fprintf(env.Stderr, "sluice project: unknown subcommand %q\nUsage: sluice %s\n", sub, synopsis)
		return errUsage
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	needID := sub == "show" || sub == "update" || sub == "delete"
	if problem := positional(pos, argsIf(needID), argsIf(needID), "the project ID"); problem != "" {
		return badArgs(env, fs, problem)
	}
	if sub == "create" && name == "" {
		return badArgs(env, fs, "--name is required")
	}
	c, err := t.open(env, accessFor(sub == "create"))
	if err != nil {
		return err
	}
	defer c.Close()

	switch sub {
	case "list":
		ps, err := c.ListProjects(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, ps)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tAPP ID\tWEBHOOK AUTH\tS2S\tREDIRECT HOSTS\tCREATED")
		for _, p := range ps {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%v\t%s\t%s\n", p.ID, p.Name, p.Settings.AppID, p.Settings.AuthMode(), p.Settings.S2SEnabled(),
				strings.Join(p.Settings.RedirectHosts, ","), p.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
		}
		return tw.Flush()
	case "create":
		st, err := sf.apply(project.Settings{})
		if err != nil {
			return err
		}
		req := admin.CreateProject{Name: name, Settings: st}
		if id.set {
			req.ID = &id.v
		}
		p, err := c.CreateProject(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, p)
		}
		fmt.Fprintf(env.Stdout, "project %d (%s) created, application id %s\n", p.ID, p.Name, p.Settings.AppID)
		return nil
	}

	pid, err := parseProjectID(pos[0])
	if err != nil {
		return err
	}
	switch sub {
	case "show":
		p, err := c.GetProject(ctx, pid)
		if err != nil {
			return err
		}
		return printJSON(env, p)
	case "update":
		var req admin.UpdateProject
		if name != "" {
			req.Name = &name
		}
		if sf.set() {
			cur, err := c.GetProject(ctx, pid)
			if err != nil {
				return err
			}
			st, err := sf.apply(cur.Settings)
			if err != nil {
				return err
			}
			req.Settings = &st
		}
		if req.Name == nil && req.Settings == nil {
			return fmt.Errorf("nothing to update: give --name or settings flags")
		}
		p, err := c.UpdateProject(ctx, pid, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, p)
		}
		fmt.Fprintf(env.Stdout, "project %d (%s) updated\n", p.ID, p.Name)
		return nil
	default: // delete
		if err := c.DeleteProject(ctx, pid); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "project %d deleted\n", pid)
		return nil
	}
}

func runToken(ctx context.Context, args []string, env *Env) error {
	const synopsis = `token <command> --project N [flags] [TOKEN_ID]

Commands:
  create --project N [--name L] [--secret S]   a new API token; prints its secret once
  list --project N                             the project's tokens: id, name, hint, when made and revoked
  revoke --project N TOKEN_ID                  revoke a token, at once

Run 'sluice token <command> -h' for its flags.`
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n", synopsis)
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags("token "+sub, synopsis, env)
	var t target
	t.register(fs, env)
	asJSON := fs.Bool("json", false, "print JSON")
	projectFlag := fs.String("project", "", "project id (required)")
	var name, secret string
	switch sub {
	case "create":
		fs.StringVar(&name, "name", "", "a label for the token")
		fs.StringVar(&secret, "secret", "", "import this secret (a token a sender already uses) instead of generating one")
	case "list", "revoke":
	default:
		fmt.Fprintf(env.Stderr, "sluice token: unknown subcommand %q\nUsage: sluice %s\n", sub, synopsis)
		return errUsage
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *projectFlag == "" {
		return badArgs(env, fs, "--project is required")
	}
	if problem := positional(pos, argsIf(sub == "revoke"), argsIf(sub == "revoke"), "the token ID"); problem != "" {
		return badArgs(env, fs, problem)
	}
	pid, err := parseProjectID(*projectFlag)
	if err != nil {
		return err
	}
	c, err := t.open(env, accessFor(sub == "create"))
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "create":
		ct, err := c.CreateToken(ctx, pid, admin.CreateToken{Name: name, Secret: secret})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, ct)
		}
		fmt.Fprintf(env.Stdout, "token %s created for project %d\nsecret (shown once; only its SHA-256 is stored):\n%s\n", ct.Token.ID, pid, ct.Secret)
		return nil
	case "list":
		ts, err := c.ListTokens(ctx, pid)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, ts)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tHINT\tCREATED\tREVOKED")
		for _, tk := range ts {
			revoked := "-"
			if tk.RevokedAt != nil {
				revoked = tk.RevokedAt.Format("2006-01-02 15:04:05Z07:00")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tk.ID, tk.Name, tk.Hint, tk.CreatedAt.Format("2006-01-02 15:04:05Z07:00"), revoked)
		}
		return tw.Flush()
	default: // revoke
		tk, err := c.RevokeToken(ctx, pid, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, tk)
		}
		fmt.Fprintf(env.Stdout, "token %s of project %d revoked\n", tk.ID, pid)
		return nil
	}
}
