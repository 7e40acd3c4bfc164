package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/usher-auth/usher/internal/token"
	"github.com/usher-auth/usher/store"
)

// rotationDelay is how long a new key is published before it signs: longer
// than a gateway's key reload and the JWKS cache time (one minute each), so
// every verifier knows the key before the first token it signs.
const rotationDelay = 2 * time.Minute

func runKeys(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return errors.New("usage: usher keys rotate [--after DURATION]")
	}
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	after := fs.Duration("after", rotationDelay, "how long the key is published before it signs")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if cfg.JWTKeyFile != "" {
		return errors.New("USHER_JWT_KEY_FILE pins the signing key: replace the file instead of rotating")
	}
	if err := resolveSecrets(&cfg, "node"); err != nil {
		return err
	}
	secret, _ := token.ParseSecret(cfg.SecretKey)
	keys, err := token.Derive(secret)
	if err != nil {
		return err
	}
	k, err := token.NewSigningKey()
	if err != nil {
		return err
	}
	sealed, err := keys.SealPrivate(k)
	if err != nil {
		return err
	}
	db, err := connectPostgres(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.AddSigningKey(ctx, store.SigningKeyRow{ID: k.ID, Public: k.Public(), Sealed: sealed}, *after); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added signing key %s: published now, signs from %s\n", k.ID, time.Now().Add(*after).UTC().Format(time.RFC3339))
	return nil
}
