// Package testdb gives a test a fresh PostgreSQL database with usher's
// schema, on the shared server, dropped when the test ends.
package testdb

import (
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose

	"github.com/usher-auth/usher/internal/testenv"
	"github.com/usher-auth/usher/migrations"
)

// New creates and migrates a database and returns its URL.
func New(t testing.TB) string {
	t.Helper()
	url := testenv.Database(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(t.Context(), db); err != nil {
		t.Fatalf("migrate the test database: %v", err)
	}
	return url
}
