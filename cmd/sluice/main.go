// Command sluice is the server-to-server event gateway. See the README.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/internal/cli"
)

func main() {
	// The signals stay caught until the process exits: a second SIGTERM
	// that comes as a command stops (timeout(1) sends one to the command
	// and one to its process group) must not kill it with the default
	// action, which would turn a clean exit into status 143.
	ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	os.Exit(cli.Main(ctx, os.Args[1:], cli.OSEnv()))
}
