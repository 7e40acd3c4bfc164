// Package migrations holds usher's PostgreSQL schema as numbered goose SQL
// files embedded in the binary, and the runner behind `usher migrate`.
//
// Every change to the schema is a new numbered file; a file that has been
// applied anywhere is never edited. Each migration and its version row
// commit in one transaction, and every command that changes the database
// holds a PostgreSQL advisory lock, so several processes may migrate at once.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// versionTable is goose's record of applied migrations. It is bookkeeping,
// not schema: `check` leaves it out of the comparison.
const versionTable = goose.DefaultTablename

// ErrUnknownVersion means the database records a migration this binary does
// not have, typically because a newer usher migrated it.
var ErrUnknownVersion = errors.New("unknown migration version")

// Up applies all pending migrations. Several processes may call it at once:
// they queue on a session advisory lock and each migration is applied once.
func Up(ctx context.Context, db *sql.DB) error {
	r, err := newRunner(db)
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	if _, err := r.up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// runner is a goose provider over the embedded files plus direct access to
// goose's version table, which `force` and the unknown-version check need.
type runner struct {
	db     *sql.DB
	p      *goose.Provider
	store  database.Store
	locker lock.SessionLocker
	known  []int64 // versions of the embedded migrations, ascending
}

func newRunner(db *sql.DB) (*runner, error) {
	// goose retries a taken lock every 5 s by default; a process started
	// next to another should wait about as long as the migrations take, not
	// up to 5 s more. 300 tries of 1 s leave room for a slow migration.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("create session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		// Only the embedded SQL files: a Go migration registered globally by
		// some dependency must never run against usher's database.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	store, err := database.NewStore(database.DialectPostgres, versionTable)
	if err != nil {
		return nil, fmt.Errorf("version table store: %w", err)
	}
	var known []int64
	for _, s := range p.ListSources() {
		known = append(known, s.Version)
	}
	slices.Sort(known)
	return &runner{db: db, p: p, store: store, locker: locker, known: known}, nil
}

func (r *runner) latest() int64 {
	return r.known[len(r.known)-1]
}

func (r *runner) isKnown(v int64) bool {
	_, found := slices.BinarySearch(r.known, v)
	return found
}

// applied returns the versions recorded in the database, ascending, without
// goose's zero row.
func (r *runner) applied(ctx context.Context) ([]int64, error) {
	// GetVersions creates goose's table on a fresh database, as every goose
	// command does, so the listing below has something to read.
	if _, _, err := r.p.GetVersions(ctx); err != nil {
		return nil, fmt.Errorf("read database version: %w", err)
	}
	rows, err := r.store.ListMigrations(ctx, r.db)
	if err != nil {
		return nil, fmt.Errorf("read database version: %w", err)
	}
	var out []int64
	for _, row := range rows {
		if row.Version > 0 && !slices.Contains(out, row.Version) {
			out = append(out, row.Version)
		}
	}
	slices.Sort(out)
	return out, nil
}

// checkKnown refuses a database that records a version this binary lacks:
// goose would otherwise treat it as "nothing to do" and usher would run
// against a schema it was not built for.
func (r *runner) checkKnown(applied []int64) error {
	var unknown []int64
	for _, v := range applied {
		if !r.isKnown(v) {
			unknown = append(unknown, v)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	top := unknown[len(unknown)-1]
	if top > r.latest() {
		return fmt.Errorf("%w: database is at version %d but this usher knows migrations up to %d: "+
			"run the usher build that applied it, or `usher migrate force %d` if you rolled it back by hand",
			ErrUnknownVersion, top, r.latest(), r.latest())
	}
	// A version below our latest that we lack: a migration was removed from
	// this build, or the database came from a branch that added one.
	var below int64
	for _, v := range applied {
		if r.isKnown(v) {
			below = v
		}
	}
	return fmt.Errorf("%w: database has version %d applied but this usher does not know it (it knows %s): "+
		"run the usher build that applied it, or `usher migrate force %d` if you rolled it back by hand",
		ErrUnknownVersion, top, joinVersions(r.known), below)
}

// current is the highest applied version, 0 when none is.
func current(applied []int64) int64 {
	if len(applied) == 0 {
		return 0
	}
	return applied[len(applied)-1]
}

// up applies every pending migration.
func (r *runner) up(ctx context.Context) ([]*goose.MigrationResult, error) {
	applied, err := r.applied(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.checkKnown(applied); err != nil {
		return nil, err
	}
	return r.p.Up(ctx)
}

// force records the database as being at version v without running any
// migration: afterwards the version table holds exactly the known versions
// up to v. Rows above v and rows for versions this binary does not know go,
// since every other command would refuse them.
func (r *runner) force(ctx context.Context, v int64) (retErr error) {
	if v != 0 && !r.isKnown(v) {
		return fmt.Errorf("no migration has version %d (known: %s)", v, joinVersions(r.known))
	}
	if _, err := r.applied(ctx); err != nil {
		return err
	}
	// The same lock as goose's commands, so force cannot interleave with a
	// running up or down.
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if err := r.locker.SessionLock(ctx, conn); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		if err := r.locker.SessionUnlock(context.WithoutCancel(ctx), conn); err != nil && retErr == nil {
			retErr = fmt.Errorf("release migration lock: %w", err)
		}
	}()

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	rows, err := r.store.ListMigrations(ctx, tx)
	if err != nil {
		return fmt.Errorf("read version table: %w", err)
	}
	have := map[int64]bool{}
	for _, row := range rows {
		have[row.Version] = true
	}
	for version := range have {
		if version > 0 && (version > v || !r.isKnown(version)) {
			if err := r.store.Delete(ctx, tx, version); err != nil {
				return fmt.Errorf("delete version %d: %w", version, err)
			}
		}
	}
	// goose refuses a table without its zero row; put it back if a hand
	// edit removed it.
	for _, version := range append([]int64{0}, r.known...) {
		if version <= v && !have[version] {
			if err := r.store.Insert(ctx, tx, database.InsertRequest{Version: version}); err != nil {
				return fmt.Errorf("record version %d: %w", version, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func joinVersions(vs []int64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(s, ", ")
}
