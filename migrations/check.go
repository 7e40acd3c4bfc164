package migrations

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// check builds the schema the migrations describe in a scratch database on
// the same server and compares it with the live one, so a change made by
// hand, or a migration edited after it ran, shows up before it bites.
func check(ctx context.Context, databaseURL string, w io.Writer) (retErr error) {
	live, cfg, err := open(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("migrate check: %w", err)
	}
	defer live.Close()

	b := make([]byte, 6)
	rand.Read(b)
	scratch := "usher_check_" + hex.EncodeToString(b)
	ident := pgx.Identifier{scratch}.Sanitize()
	if _, err := live.ExecContext(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("migrate check: create scratch database %s (the check needs the CREATEDB privilege): %w", scratch, err)
	}
	defer func() {
		// Drop even when the check was cancelled: a scratch database left
		// behind would be found only by someone listing databases.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := live.ExecContext(dctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil && retErr == nil {
			retErr = fmt.Errorf("migrate check: drop scratch database %s: %w", scratch, err)
		}
	}()

	scfg := cfg.Copy()
	scfg.Database = scratch
	ref := stdlib.OpenDB(*scfg)
	defer ref.Close()
	r, err := newRunner(ref)
	if err != nil {
		return fmt.Errorf("migrate check: %w", err)
	}
	if _, err := r.up(ctx); err != nil {
		return fmt.Errorf("migrate check: migrate scratch database %s: %w", scratch, err)
	}
	want, err := dumpSchema(ctx, ref)
	if err != nil {
		return fmt.Errorf("migrate check: scratch database: %w", err)
	}
	got, err := dumpSchema(ctx, live)
	if err != nil {
		return fmt.Errorf("migrate check: %w", err)
	}

	// The version is context for the operator, not part of the verdict: a
	// database one migration behind shows as the tables it lacks.
	v, err := recordedVersion(ctx, live)
	if err != nil {
		return fmt.Errorf("migrate check: %w", err)
	}
	if v != r.latest() {
		fmt.Fprintf(w, "note: the database records version %d; the migrations go up to %d\n", v, r.latest())
	}

	diffs := diffSchemas(want, got)
	if len(diffs) == 0 {
		fmt.Fprintf(w, "no drift: the database's schema matches the migrations up to version %d\n", r.latest())
		return nil
	}
	fmt.Fprintf(w, "schema drift between the migrations up to version %d and the database:\n", r.latest())
	for _, d := range diffs {
		fmt.Fprintf(w, "  %s\n", d)
	}
	return fmt.Errorf("migrate check: schema drift: %d difference(s), listed above", len(diffs))
}

// recordedVersion reads goose's table without creating it: check must not
// write to the database it inspects.
func recordedVersion(ctx context.Context, db *sql.DB) (int64, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int64
	q := "SELECT coalesce(max(version_id), 0) FROM " + pgx.Identifier{versionTable}.Sanitize()
	if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("read version: %w", err)
	}
	return v, nil
}

// schemaObject is one table, column, constraint or index, with the
// definition that must match.
type schemaObject struct {
	kind  string // table, column, constraint, index
	table string // schema-qualified unless in the current schema
	def   string
}

// schema maps "kind table.name" (or "table name") to its object.
type schema map[string]schemaObject

// schemaQuery lists every user table with its columns, constraints and
// indexes, each as text PostgreSQL itself renders, so two databases built
// the same way give the same rows. goose's table and tables that belong to
// extensions are left out: they are not usher's schema.
const schemaQuery = `
WITH t AS (
	SELECT c.oid, n.nspname,
		CASE WHEN n.nspname = current_schema() THEN c.relname::text
		     ELSE n.nspname || '.' || c.relname END AS name
	FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p')
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
	  AND n.nspname NOT LIKE 'pg\_%'
	  AND c.relname <> $1
	  AND NOT EXISTS (
		SELECT 1 FROM pg_depend d
		WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'table'::text, t.name, ''::text, ''::text FROM t
UNION ALL
SELECT 'column', t.name, a.attname::text,
	format_type(a.atttypid, a.atttypmod)
	|| CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END
	|| CASE WHEN a.attgenerated = 's' THEN ' generated always as (' || pg_get_expr(d.adbin, d.adrelid) || ') stored'
	        ELSE coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') END
	|| CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
	                      WHEN 'd' THEN ' generated by default as identity' ELSE '' END
FROM t
JOIN pg_attribute a ON a.attrelid = t.oid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', t.name, con.conname::text, pg_get_constraintdef(con.oid)
FROM t
JOIN pg_constraint con ON con.conrelid = t.oid
UNION ALL
SELECT 'index', t.name, i.relname::text, pg_get_indexdef(i.oid)
FROM t
JOIN pg_index x ON x.indrelid = t.oid
JOIN pg_class i ON i.oid = x.indexrelid
`

// dumpSchema reads the schema `check` compares.
func dumpSchema(ctx context.Context, db *sql.DB) (schema, error) {
	rows, err := db.QueryContext(ctx, schemaQuery, versionTable)
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	s := schema{}
	for rows.Next() {
		var o schemaObject
		var name string
		if err := rows.Scan(&o.kind, &o.table, &name, &o.def); err != nil {
			return nil, fmt.Errorf("read schema: %w", err)
		}
		key := o.kind + " " + o.table
		if o.kind != "table" {
			key += "." + name
		}
		s[key] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	return s, nil
}

var kindOrder = map[string]int{"table": 0, "column": 1, "constraint": 2, "index": 3}

// diffSchemas lists how got differs from want, table by table. The parts of
// a table that is missing altogether, or not made by the migrations at all,
// are not listed one by one: the table says it.
func diffSchemas(want, got schema) []string {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	object := func(k string) schemaObject {
		if o, ok := want[k]; ok {
			return o
		}
		return got[k]
	}
	slices.SortFunc(keys, func(a, b string) int {
		oa, ob := object(a), object(b)
		return cmp.Or(
			cmp.Compare(oa.table, ob.table),
			cmp.Compare(kindOrder[oa.kind], kindOrder[ob.kind]),
			cmp.Compare(a, b),
		)
	})

	var out []string
	for _, k := range keys {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case inWant && !inGot:
			if _, tableThere := got["table "+w.table]; w.kind != "table" && !tableThere {
				continue
			}
			out = append(out, "only in the migrations: "+describe(k, w))
		case !inWant && inGot:
			if _, tableThere := want["table "+g.table]; g.kind != "table" && !tableThere {
				continue
			}
			out = append(out, "only in the database:   "+describe(k, g))
		case w.def != g.def:
			out = append(out, fmt.Sprintf("differs: %s: the migrations make %q, the database has %q", k, w.def, g.def))
		}
	}
	return out
}

func describe(key string, o schemaObject) string {
	if o.def == "" {
		return key
	}
	return key + " (" + o.def + ")"
}
