package cli

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/internal/identity"
)

// runHash is `sluice hash phone|email VALUE`: the SHA-256 sluice stores
// for a phone number or an e-mail address, after normalising it.
func runHash(ctx context.Context, args []string, env *Env) error {
	const synopsis = "hash phone|email VALUE [--region XX] [--normalized]"
	if len(args) == 0 || (args[0] != "phone" && args[0] != "email") {
		fmt.Fprintf(env.Stderr, "Usage: sluice %s\n", synopsis)
		return errUsage
	}
	kind := args[0]
	fs := newFlags("hash "+kind, synopsis, env)
	region := fs.String("region", "", "region of a phone number written without a country code (ISO 3166-1 alpha-2, e.g. IR)")
	normalized := fs.Bool("normalized", false, "print the normalised value before its hash")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if problem := positional(pos, 1, 1, "the value to hash"); problem != "" {
		return badArgs(env, fs, problem)
	}
	var norm string
	if kind == "phone" {
		if *region != "" && !identity.ValidRegion(*region) {
			return fmt.Errorf("--region %q is not a region code", *region)
		}
		norm, err = identity.NormalizePhone(pos[0], *region)
	} else {
		norm, err = identity.NormalizeEmail(pos[0])
	}
	if err != nil {
		return err
	}
	if *normalized {
		fmt.Fprintln(env.Stdout, norm)
	}
	fmt.Fprintln(env.Stdout, identity.Hash(norm))
	return nil
}
