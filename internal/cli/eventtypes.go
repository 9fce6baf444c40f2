package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/sluicehq/sluice/internal/admin"
)

func runEventType(ctx context.Context, args []string, env *Env) error {
	const synopsis = `event-type <command> --project N [flags] [SLUG]

Commands:
  create --project N --slug S [--kind action|revenue] [--name N] [--description D]
                               declare an s2s event type (messages send its slug as name)
  list --project N             the project's event types
  delete --project N SLUG      remove one

Run 'sluice event-type <command> -h' for its flags.`
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n", synopsis)
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags("event-type "+sub, synopsis, env)
	var t target
	t.register(fs, env)
	asJSON := fs.Bool("json", false, "print JSON")
	projectFlag := fs.String("project", "", "project id (required)")
	var b admin.EventTypeBody
	switch sub {
	case "create":
		fs.StringVar(&b.Slug, "slug", "", "the slug s2s messages send as name (required)")
		fs.StringVar(&b.Kind, "kind", "action", "action or revenue")
		fs.StringVar(&b.Name, "name", "", "a readable name")
		fs.StringVar(&b.Description, "description", "", "what the event means")
	case "list", "delete":
	default:
		fmt.Fprintf(env.Stderr, "sluice event-type: unknown subcommand %q\nUsage: sluice %s\n", sub, synopsis)
		return errUsage
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *projectFlag == "" {
		return badArgs(env, fs, "--project is required")
	}
	if problem := positional(pos, argsIf(sub == "delete"), argsIf(sub == "delete"), "the event type's slug"); problem != "" {
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
		et, err := c.CreateEventType(ctx, pid, b)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, et)
		}
		fmt.Fprintf(env.Stdout, "event type %s (%s) created for project %d\n", et.Slug, et.Kind, pid)
		return nil
	case "list":
		ets, err := c.ListEventTypes(ctx, pid)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, ets)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tKIND\tNAME\tDESCRIPTION")
		for _, et := range ets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", et.Slug, et.Kind, et.Name, et.Description)
		}
		return tw.Flush()
	default:
		if err := c.DeleteEventType(ctx, pid, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "event type %s of project %d deleted\n", pos[0], pid)
		return nil
	}
}
