package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/usher-auth/usher/gateway"
	"github.com/usher-auth/usher/internal/password"
	"github.com/usher-auth/usher/store"
)

const usersUsage = `usage:
  usher users create-admin --email E   password from standard input, or a prompt on a terminal
  usher users set-role E ROLE          ROLE is user or admin; ends the user's sessions
  usher users import [FILE]            JSON lines {"email","name","hash","email_verified"}; no events are sent`

// runUsers is the operator's account tool. Every write goes through store,
// like the API's, so revocations and versions are never forgotten.
func runUsers(ctx context.Context, cfg config, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usersUsage)
	}
	db, err := connectPostgres(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "create-admin":
		return createAdmin(ctx, cfg, db, args[1:], stdin, stdout)
	case "set-role":
		if len(args) != 3 {
			return errors.New(usersUsage)
		}
		return setRole(ctx, db, args[1], args[2], stdout)
	case "import":
		in := stdin
		if len(args) == 2 {
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		return importUsers(ctx, db, in, stdout)
	}
	return fmt.Errorf("unknown users command %q\n%s", args[0], usersUsage)
}

func createAdmin(ctx context.Context, cfg config, db *store.DB, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("create-admin", flag.ContinueOnError)
	email := fs.String("email", "", "the admin's email address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addr, msg := gateway.CheckEmail(*email)
	if msg != "" {
		return fmt.Errorf("--email %s", msg)
	}
	pw, err := readPassword(stdin, stdout)
	if err != nil {
		return err
	}
	if msg := password.Validate(pw, addr); msg != "" {
		return fmt.Errorf("password %s", msg)
	}
	hash, err := password.Hash(pw, password.Params{MemoryKiB: cfg.Argon2MemoryKiB, Time: cfg.Argon2Time, Threads: 1})
	if err != nil {
		return err
	}
	u, err := db.CreateUser(ctx, store.NewUser{Email: addr, PasswordHash: hash, Role: "admin", Verified: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created admin %s (%s)\n", u.Email, u.ID)
	return nil
}

// readPassword prompts without echo on a terminal, else reads one line.
func readPassword(stdin io.Reader, stdout io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stdout, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stdout)
		return string(b), err
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func setRole(ctx context.Context, db *store.DB, email, role string, stdout io.Writer) error {
	if role != "user" && role != "admin" {
		return fmt.Errorf("role must be user or admin, not %q", role)
	}
	u, err := db.UserByEmail(ctx, strings.ToLower(email))
	if err != nil {
		return fmt.Errorf("user %s: %w", email, err)
	}
	u, ch, err := db.AdminUpdate(ctx, u.ID, store.AdminChange{Role: &role})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is now %s; %d sessions ended\n", u.Email, u.Role, len(ch.Ended))
	return nil
}

// importLine is one account of `usher users import`.
type importLine struct {
	Email         string `json:"email"`
	Name          string `json:"name"`
	Hash          string `json:"hash"`
	EmailVerified bool   `json:"email_verified"`
}

// importBatch bounds memory and transaction size on large imports.
const importBatch = 1000

func importUsers(ctx context.Context, db *store.DB, in io.Reader, stdout io.Writer) error {
	dec := json.NewDecoder(in)
	dec.DisallowUnknownFields()
	var (
		batch          []store.NewUser
		read, inserted int64
		line           int
	)
	flush := func() error {
		n, err := db.ImportUsers(ctx, batch)
		inserted += n
		batch = batch[:0]
		return err
	}
	for {
		var l importLine
		err := dec.Decode(&l)
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		email, msg := gateway.CheckEmail(l.Email)
		if msg != "" {
			return fmt.Errorf("line %d: email %s", line, msg)
		}
		// Absurd parameters are refused here, before any login would spend
		// them.
		if err := password.Check(l.Hash); err != nil {
			return fmt.Errorf("line %d (%s): %w", line, email, err)
		}
		batch = append(batch, store.NewUser{Email: email, Name: l.Name, PasswordHash: l.Hash, Verified: l.EmailVerified})
		read++
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d of %d users (%d already existed)\n", inserted, read, read-inserted)
	return nil
}
