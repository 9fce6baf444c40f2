package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicehq/sluice/internal/profile"
)

// runProfile is `sluice profile show|events|delete --project N TYPE VALUE`,
// against the running server: profiles are built by its consumer, and an
// erasure reaches its log and hooks.
func runProfile(ctx context.Context, args []string, env *Env) error {
	const synopsis = `profile <command> --project N IDENTITY_TYPE VALUE [flags]

Commands:
  show --project N TYPE VALUE     the person's profile: identities, traits, counters
  events --project N TYPE VALUE [--limit N] [--key GLOB] [--before CURSOR]
                                  their timeline, newest first
  delete --project N TYPE VALUE   erase the person: profile, identities and events, from every
                                  read path and from hook deliveries not yet made

Run 'sluice profile <command> -h' for its flags.`
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n  identity types: %s\n", synopsis, profile.IdentityTypes())
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags("profile "+sub, synopsis, env)
	var t target
	t.register(fs, env)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	projectFlag := fs.String("project", "", "project id (required)")
	var limit int
	var key, before string
	switch sub {
	case "show", "delete":
	case "events":
		fs.IntVar(&limit, "limit", 20, "how many events, newest first (1–1000)")
		fs.StringVar(&key, "key", "", "only events whose key matches this glob, e.g. in.commerce.*")
		fs.StringVar(&before, "before", "", "the next cursor a previous page printed")
	default:
		fmt.Fprintf(env.Stderr, "sluice profile: unknown subcommand %q\nUsage: sluice %s\n", sub, synopsis)
		return errUsage
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *projectFlag == "" {
		return badArgs(env, fs, "--project is required")
	}
	if problem := positional(pos, 2, 2, "an identity type and a value, such as email a@example.com"); problem != "" {
		return badArgs(env, fs, problem)
	}
	pid, err := parseProjectID(*projectFlag)
	if err != nil {
		return err
	}
	r, err := t.server(env, "profiles are built by the running server, so they are read through its admin API")
	if err != nil {
		return err
	}
	defer r.Close()
	path := fmt.Sprintf("/api/v1/projects/%d/profiles/%s/%s", pid, url.PathEscape(pos[0]), url.PathEscape(pos[1]))
	switch sub {
	case "show":
		var raw json.RawMessage
		if err := r.call(ctx, "GET", path, nil, &raw); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, raw)
		}
		var p profile.Profile
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		printProfile(env, &p)
		return nil
	case "events":
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if key != "" {
			q.Set("key", key)
		}
		if before != "" {
			q.Set("before", before)
		}
		var pg profile.EventsPage
		if err := r.call(ctx, "GET", path+"/events?"+q.Encode(), nil, &pg); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, pg)
		}
		for _, b := range pg.Events {
			fmt.Fprintf(env.Stdout, "%s\n", b)
		}
		if pg.Next != "" {
			fmt.Fprintf(env.Stderr, "more: --before %s\n", pg.Next)
		}
		return nil
	default: // delete
		var er profile.ErasedAnswer
		if err := r.call(ctx, "DELETE", path, nil, &er); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, er)
		}
		fmt.Fprintf(env.Stdout, "erased profile %s of project %d: %s, %s, %s, %s\n", er.Profile, pid,
			plural(er.Profiles, "profile"), plural(er.Identities, "identity"), plural(er.Attributes, "attribute"), plural(int(er.Events), "event"))
		return nil
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func printProfile(env *Env, p *profile.Profile) {
	fmt.Fprintf(env.Stdout, "profile %s of project %d, seen %s – %s\n", p.ID, p.ProjectID, p.FirstSeen.Format("2006-01-02 15:04:05Z07:00"), p.LastSeen.Format("2006-01-02 15:04:05Z07:00"))
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nIDENTITY\tVALUE\tSTRENGTH\tFIRST SEEN\tLAST SEEN")
	for _, i := range p.Identities {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.Type, i.Value, i.Strength, i.FirstSeen.Format("2006-01-02 15:04:05"), i.LastSeen.Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	if len(p.Attributes) > 0 {
		names := make([]string, 0, len(p.Attributes))
		for n := range p.Attributes {
			names = append(names, n)
		}
		sort.Strings(names)
		tw = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nATTRIBUTE\tVALUE\tSET AT")
		for _, n := range names {
			a := p.Attributes[n]
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n, a.Value, a.Time.Format("2006-01-02 15:04:05"))
		}
		tw.Flush()
	}
	tr := p.Traits
	fmt.Fprintf(env.Stdout, "\nevents %d", tr.Events)
	if len(tr.Revenue) > 0 {
		var cur []string
		for c, v := range tr.Revenue {
			cur = append(cur, v+" "+c)
		}
		sort.Strings(cur)
		fmt.Fprintf(env.Stdout, ", revenue %s", strings.Join(cur, ", "))
	}
	fmt.Fprintf(env.Stdout, ", purchases %d, cart %d items, wishlist %d\n", tr.Purchases, len(tr.Cart), len(tr.Wishlist))
	for _, c := range p.Conflicts {
		fmt.Fprintf(env.Stdout, "conflict: event %s linked %s %s, which would add %s %s; the profile keeps %s\n", c.EventID, c.Linked.Type, c.Linked.Value, c.Type, c.Value, c.Held)
	}
}
