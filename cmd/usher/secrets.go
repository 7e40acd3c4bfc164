package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/usher-auth/usher/internal/token"
)

// needsSecrets says which roles use USHER_SECRET_KEY (signing keys, refresh
// MACs) and USHER_EVENT_KEY (sealed mail).
var needsSecrets = map[string][2]bool{
	"serve":  {true, true},
	"node":   {true, true},
	"mailer": {false, true},
}

// devKeys is the file serve keeps generated development secrets in: never
// in PostgreSQL, where a dump would carry them.
type devKeys struct {
	SecretKey string `json:"secret_key"`
	EventKey  string `json:"event_key"`
}

// resolveSecrets fills in the secrets a role needs. serve generates missing
// ones into USHER_DATA_DIR/dev-keys.json (development); a split process
// refuses to start without them, since each must share them with the others.
func resolveSecrets(cfg *config, role string) error {
	need := needsSecrets[role]
	if !need[0] && !need[1] {
		return nil
	}
	if role == "serve" && (cfg.SecretKey == "" || cfg.EventKey == "") {
		keys, err := loadDevKeys(filepath.Join(cfg.DataDir, "dev-keys.json"))
		if err != nil {
			return err
		}
		if cfg.SecretKey == "" {
			cfg.SecretKey = keys.SecretKey
		}
		if cfg.EventKey == "" {
			cfg.EventKey = keys.EventKey
		}
	}
	for i, name := range []string{"USHER_SECRET_KEY", "USHER_EVENT_KEY"} {
		value := []string{cfg.SecretKey, cfg.EventKey}[i]
		if !need[i] {
			continue
		}
		if value == "" {
			return fmt.Errorf("%s is required for usher %s (generate one with: openssl rand -base64 32)", name, role)
		}
		if _, err := token.ParseSecret(value); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func loadDevKeys(path string) (devKeys, error) {
	var keys devKeys
	raw, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(raw, &keys); err != nil {
			return keys, fmt.Errorf("development keys %s: %w", path, err)
		}
		return keys, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return keys, fmt.Errorf("development keys: %w", err)
	}
	keys = devKeys{SecretKey: token.NewSecret(), EventKey: token.NewSecret()}
	raw, _ = json.MarshalIndent(keys, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return keys, fmt.Errorf("development keys: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return keys, fmt.Errorf("development keys: %w", err)
	}
	return keys, nil
}
