package migrations

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

const usage = `usage: usher migrate COMMAND
  up                       apply all pending migrations
  down [N]                 roll back the last N migrations (default 1)
  goto V                   migrate up or down to version V (0 rolls back everything)
  force V                  record the database as being at version V without running anything
  version                  print the database's version
  status                   list every migration, applied or pending
  create NAME [--dir DIR]  write the next numbered migration file into DIR (default migrations)
  check                    compare the database's schema with what the migrations build
`

// Command runs one `usher migrate` subcommand; args start with the
// subcommand's name (args[0] is "up", "down", …). Output for the operator
// goes to stdout; failures, drift included, come back as errors.
func Command(ctx context.Context, databaseURL string, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError("missing command")
	}
	name, rest := args[0], args[1:]

	// Arguments are checked before connecting, so a typo fails at once and
	// says so even when the database is down.
	var run func(ctx context.Context, r *runner) error
	switch name {
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "create":
		return create(rest, stdout)
	case "check":
		if len(rest) > 0 {
			return usageError("check takes no arguments")
		}
		return check(ctx, databaseURL, stdout)
	case "up":
		if len(rest) > 0 {
			return usageError("up takes no arguments")
		}
		run = func(ctx context.Context, r *runner) error { return r.cmdUp(ctx, stdout) }
	case "down":
		n := int64(1)
		switch len(rest) {
		case 0:
		case 1:
			var err error
			if n, err = strconv.ParseInt(rest[0], 10, 64); err != nil || n < 1 {
				return usageError(fmt.Sprintf("down: N must be a whole number of at least 1, got %q", rest[0]))
			}
		default:
			return usageError("down takes at most one argument")
		}
		run = func(ctx context.Context, r *runner) error { return r.cmdDown(ctx, n, stdout) }
	case "goto", "force":
		if len(rest) != 1 {
			return usageError(name + " takes one version")
		}
		v, err := strconv.ParseInt(rest[0], 10, 64)
		if err != nil || v < 0 {
			return usageError(fmt.Sprintf("%s: V must be a version number (0 or more), got %q", name, rest[0]))
		}
		if name == "goto" {
			run = func(ctx context.Context, r *runner) error { return r.cmdGoto(ctx, v, stdout) }
		} else {
			run = func(ctx context.Context, r *runner) error { return r.cmdForce(ctx, v, stdout) }
		}
	case "version":
		if len(rest) > 0 {
			return usageError("version takes no arguments")
		}
		run = func(ctx context.Context, r *runner) error { return r.cmdVersion(ctx, stdout) }
	case "status":
		if len(rest) > 0 {
			return usageError("status takes no arguments")
		}
		run = func(ctx context.Context, r *runner) error { return r.cmdStatus(ctx, stdout) }
	default:
		return usageError(fmt.Sprintf("unknown command %q", name))
	}

	db, _, err := open(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	defer db.Close()
	r, err := newRunner(db)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	if err := run(ctx, r); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	return nil
}

func usageError(msg string) error {
	return fmt.Errorf("migrate: %s\n%s", msg, usage)
}

// open connects through pgx's database/sql driver. It accepts URLs and
// key=value strings alike and returns the parsed config, which `check`
// reuses for its scratch database.
func open(ctx context.Context, databaseURL string) (*sql.DB, *pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		// An unreachable server should fail the command, not hang it.
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("connect to PostgreSQL at %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	return db, cfg, nil
}

func (r *runner) cmdUp(ctx context.Context, w io.Writer) error {
	results, err := r.up(ctx)
	printResults(w, results, err)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		fmt.Fprintln(w, "nothing to apply")
	}
	return r.printVersion(ctx, w)
}

func (r *runner) cmdDown(ctx context.Context, n int64, w io.Writer) error {
	applied, err := r.applied(ctx)
	if err != nil {
		return err
	}
	if err := r.checkKnown(applied); err != nil {
		return err
	}
	if len(applied) == 0 {
		return errors.New("nothing to roll back: the database is at version 0")
	}
	if n > int64(len(applied)) {
		return fmt.Errorf("cannot roll back %d migrations: only %d applied", n, len(applied))
	}
	// DownTo keeps its target: to undo the last n, aim at the one below them.
	target := int64(0)
	if i := len(applied) - 1 - int(n); i >= 0 {
		target = applied[i]
	}
	results, err := r.p.DownTo(ctx, target)
	printResults(w, results, err)
	if err != nil {
		return err
	}
	return r.printVersion(ctx, w)
}

func (r *runner) cmdGoto(ctx context.Context, v int64, w io.Writer) error {
	if v != 0 && !r.isKnown(v) {
		return fmt.Errorf("no migration has version %d (known: %s)", v, joinVersions(r.known))
	}
	applied, err := r.applied(ctx)
	if err != nil {
		return err
	}
	if err := r.checkKnown(applied); err != nil {
		return err
	}
	var results []*goose.MigrationResult
	switch cur := current(applied); {
	case v > cur:
		results, err = r.p.UpTo(ctx, v)
	case v < cur:
		results, err = r.p.DownTo(ctx, v)
	default:
		fmt.Fprintf(w, "already at version %d\n", v)
		return nil
	}
	printResults(w, results, err)
	if err != nil {
		return err
	}
	return r.printVersion(ctx, w)
}

func (r *runner) cmdForce(ctx context.Context, v int64, w io.Writer) error {
	if err := r.force(ctx, v); err != nil {
		return err
	}
	fmt.Fprintf(w, "database recorded at version %d; no migration was run\n", v)
	return nil
}

func (r *runner) cmdVersion(ctx context.Context, w io.Writer) error {
	applied, err := r.applied(ctx)
	if err != nil {
		return err
	}
	if err := r.checkKnown(applied); err != nil {
		return err
	}
	fmt.Fprintln(w, current(applied))
	return nil
}

// cmdStatus lists every known migration and any applied one this binary
// does not know, then fails if there is such a one: status is what an
// operator runs to find out what went wrong.
func (r *runner) cmdStatus(ctx context.Context, w io.Writer) error {
	applied, err := r.applied(ctx)
	if err != nil {
		return err
	}
	statuses, err := r.p.Status(ctx)
	if err != nil {
		return err
	}
	type line struct {
		version   int64
		state     string
		appliedAt time.Time
		source    string
	}
	var lines []line
	for _, s := range statuses {
		lines = append(lines, line{s.Source.Version, string(s.State), s.AppliedAt, filepath.Base(s.Source.Path)})
	}
	for _, v := range applied {
		if r.isKnown(v) {
			continue
		}
		m, err := r.store.GetMigration(ctx, r.db, v)
		if err != nil {
			return fmt.Errorf("read version %d: %w", v, err)
		}
		lines = append(lines, line{v, "applied, unknown to this usher", m.Timestamp, "-"})
	}
	slices.SortFunc(lines, func(a, b line) int { return cmp.Compare(a.version, b.version) })

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tMIGRATION")
	for _, l := range lines {
		at := "-"
		if !l.appliedAt.IsZero() {
			// goose records the server's local time without a zone.
			at = l.appliedAt.Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", l.version, l.state, at, l.source)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.checkKnown(applied)
}

func (r *runner) printVersion(ctx context.Context, w io.Writer) error {
	applied, err := r.applied(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "database is at version %d\n", current(applied))
	return nil
}

// printResults prints what ran, including the migrations that were applied
// before one failed: goose reports those only inside its PartialError.
func printResults(w io.Writer, results []*goose.MigrationResult, err error) {
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = append(partial.Applied, partial.Failed)
	}
	for _, res := range results {
		if res.Error != nil {
			fmt.Fprintf(w, "FAIL  %s %s\n", res.Direction, filepath.Base(res.Source.Path))
			continue
		}
		fmt.Fprintln(w, res)
	}
}

// sqlTemplate is what `create` writes. It avoids the word "+goose" in its
// comments: goose would read such a line as an annotation.
const sqlTemplate = `-- +goose Up
-- The change. It commits in one transaction with its version row; only a
-- statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY)
-- needs the NO TRANSACTION annotation, in a migration of its own.


-- +goose Down
-- Undo exactly what Up did, so that down and goto work.

`

// create writes the next numbered migration file. It numbers from the files
// already in dir, so it needs no database.
func create(args []string, w io.Writer) error {
	dir := "migrations"
	var name string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--dir" || a == "-dir":
			if i+1 == len(args) {
				return usageError("create: --dir needs a directory")
			}
			i++
			dir = args[i]
		case strings.HasPrefix(a, "--dir="):
			dir = strings.TrimPrefix(a, "--dir=")
		case strings.HasPrefix(a, "-"):
			return usageError(fmt.Sprintf("create: unknown flag %q", a))
		case name == "":
			name = a
		default:
			return usageError("create takes one NAME")
		}
	}
	if name == "" {
		return usageError("create needs a NAME")
	}
	slug := snakeCase(name)
	if slug == "" {
		return fmt.Errorf("migrate create: name %q has no letters or digits", name)
	}

	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("migrate create: directory %s does not exist: run from the repository root or pass --dir", dir)
	}
	if err != nil {
		return fmt.Errorf("migrate create: %w", err)
	}
	var last int64
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if v, err := goose.NumericComponent(e.Name()); err == nil && v > last {
			last = v
		}
	}

	path := filepath.Join(dir, fmt.Sprintf("%05d_%s.sql", last+1, slug))
	// O_EXCL: never overwrite a migration, even one racing us.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("migrate create: %w", err)
	}
	if _, err := io.WriteString(f, sqlTemplate); err != nil {
		f.Close()
		return fmt.Errorf("migrate create: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("migrate create: write %s: %w", path, err)
	}
	fmt.Fprintf(w, "created %s\n", path)
	return nil
}

// snakeCase turns "Add user locale" into "add_user_locale".
func snakeCase(s string) string {
	var b strings.Builder
	pendingSep := false
	for _, c := range strings.ToLower(s) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(c)
			continue
		}
		pendingSep = true
	}
	return b.String()
}
