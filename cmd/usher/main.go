// Command usher is the one binary of usher: the service in one process
// (serve) or split by role, and the operator's tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "usher:", err)
		os.Exit(1)
	}
}

const usage = `usage: usher <command> [arguments]

  serve       gateway, node, outbox relay, bridge and mailer in one process
  gateway     the REST gateway only
  node        an actor node (with the outbox relay and housekeeping)
  bridge      NATS JetStream → RabbitMQ
  mailer      RabbitMQ → SMTP
  migrate     database migrations: up, down [N], goto V, force V, version, status, create NAME, check
  users       create-admin --email E, set-role E ROLE, import [FILE]
  keys        rotate: add a signing key, published before it signs
  cache       stats: hit ratio, key count and Redis memory

Configuration comes from USHER_* environment variables (see README.md).`

// run is main without the process: tests call it with their own arguments,
// environment and streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("no command\n%s", usage)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve", "gateway", "node", "bridge", "mailer":
		return runRoles(ctx, cfg, cmd, rest, stderr)
	case "migrate":
		return runMigrate(ctx, cfg, rest, stdout)
	case "users":
		return runUsers(ctx, cfg, rest, stdin, stdout)
	case "keys":
		return runKeys(ctx, cfg, rest, stdout)
	case "cache":
		return runCache(ctx, cfg, rest, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}
