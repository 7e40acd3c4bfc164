package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for goose

	"github.com/usher-auth/usher/internal/testdb"
	"github.com/usher-auth/usher/store"
)

func TestClaimEmail(t *testing.T) {
	t.Parallel()
	db, err := store.Open(t.Context(), testdb.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ctx := t.Context()
	claim := func(id string, lease time.Duration, want store.ClaimResult) {
		t.Helper()
		got, err := db.ClaimEmail(ctx, id, lease)
		if err != nil {
			t.Fatalf("claim %s: %v", id, err)
		}
		if got != want {
			t.Fatalf("claim %s: got %v, want %v", id, got, want)
		}
	}

	t.Run("a live claim holds, a sent email stays sent", func(t *testing.T) {
		id := uuid.NewString()
		claim(id, time.Minute, store.Claimed)
		claim(id, time.Minute, store.ClaimHeld)
		if err := db.MarkEmailSent(ctx, id); err != nil {
			t.Fatal(err)
		}
		claim(id, time.Minute, store.AlreadySent)
		if err := db.ReleaseEmail(ctx, id); err != nil {
			t.Fatal(err)
		}
		claim(id, time.Minute, store.AlreadySent)
	})

	t.Run("an ended lease can be claimed again", func(t *testing.T) {
		id := uuid.NewString()
		claim(id, 100*time.Millisecond, store.Claimed)
		claim(id, time.Minute, store.ClaimHeld)
		time.Sleep(150 * time.Millisecond)
		claim(id, time.Minute, store.Claimed)
		claim(id, time.Minute, store.ClaimHeld)
	})

	t.Run("a released claim can be claimed at once", func(t *testing.T) {
		id := uuid.NewString()
		claim(id, time.Minute, store.Claimed)
		if err := db.ReleaseEmail(ctx, id); err != nil {
			t.Fatal(err)
		}
		claim(id, time.Minute, store.Claimed)
	})

	t.Run("marking without a claim", func(t *testing.T) {
		id := uuid.NewString()
		if err := db.MarkEmailSent(ctx, id); err != nil {
			t.Fatal(err)
		}
		claim(id, time.Minute, store.AlreadySent)
	})

	t.Run("concurrent claims: one wins", func(t *testing.T) {
		id := uuid.NewString()
		var wg sync.WaitGroup
		results := make(chan store.ClaimResult, 16)
		for range 16 {
			wg.Go(func() {
				r, err := db.ClaimEmail(context.WithoutCancel(ctx), id, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				results <- r
			})
		}
		wg.Wait()
		close(results)
		won := 0
		for r := range results {
			if r == store.Claimed {
				won++
			} else if r != store.ClaimHeld {
				t.Errorf("got %v, want claimed or held", r)
			}
		}
		if won != 1 {
			t.Fatalf("%d claims won, want 1", won)
		}
	})

	t.Run("an id that is not a uuid is an error", func(t *testing.T) {
		if _, err := db.ClaimEmail(ctx, "not-a-uuid", time.Minute); err == nil {
			t.Fatal("got no error")
		}
	})
}
