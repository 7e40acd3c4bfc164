package argon2

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	xargon2 "golang.org/x/crypto/argon2"
)

// TestIDKeyMatchesXCrypto compares IDKey with x/crypto's on random inputs,
// each set of parameters twice with different passwords and salts: the
// second hash runs on the blocks the first left dirty, so if any block were
// read before it was written, its key would differ.
func TestIDKeyMatchesXCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		time := 1 + rng.Uint32N(3)
		memory := 8 + rng.Uint32N(4096)
		threads := uint8(1 + rng.IntN(4))
		keyLen := 16 + rng.Uint32N(100)
		for range 2 {
			pw := randomBytes(rng, rng.IntN(40))
			salt := randomBytes(rng, 8+rng.IntN(24))
			got := IDKey(pw, salt, time, memory, threads, keyLen)
			want := xargon2.IDKey(pw, salt, time, memory, threads, keyLen)
			if !bytes.Equal(got, want) {
				t.Fatalf("parameters %d (t=%d, m=%d KiB, p=%d, %d-byte key): got %x, x/crypto %x",
					i, time, memory, threads, keyLen, got, want)
			}
		}
	}
}

// TestIDKeyConcurrent hashes on several goroutines at once with usher's
// parameters, as the server's workers do, so that pooled blocks pass between
// them; run it with -race.
func TestIDKeyConcurrent(t *testing.T) {
	want := make(map[string][]byte)
	for i := range 4 {
		pw := fmt.Sprint("password ", i)
		want[pw] = xargon2.IDKey([]byte(pw), []byte("somesalt"), 2, 19456, 1, 32)
	}
	var wg sync.WaitGroup
	for pw, key := range want {
		wg.Go(func() {
			for range 3 {
				if got := IDKey([]byte(pw), []byte("somesalt"), 2, 19456, 1, 32); !bytes.Equal(got, key) {
					t.Errorf("%q: got %x, x/crypto %x", pw, got, key)
				}
			}
		})
	}
	wg.Wait()
}

// TestIDKeyVectors checks x/crypto's own argon2id test vectors, so that a
// change made to both implementations alike would still be caught.
func TestIDKeyVectors(t *testing.T) {
	for _, v := range []struct {
		time, memory uint32
		threads      uint8
		key          string
	}{
		{1, 64, 1, "655ad15eac652dc59f7170a7332bf49b8469be1fdb9c28bb"},
		{2, 64, 2, "350ac37222f436ccb5c0972f1ebd3bf6b958bf2071841362"},
		{4, 4096, 4, "145db9733a9f4ee43edf33c509be96b934d505a4efb33c5a"},
		{3, 1024, 6, "1640b932f4b60e272f5d2207b9a9c626ffa1bd88d2349016"},
	} {
		got := hex.EncodeToString(IDKey([]byte("password"), []byte("somesalt"), v.time, v.memory, v.threads, 24))
		if got != v.key {
			t.Errorf("t=%d, m=%d KiB, p=%d: got %s, want %s", v.time, v.memory, v.threads, got, v.key)
		}
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
