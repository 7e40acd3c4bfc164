package password

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fast are argon2id parameters cheap enough to hash in every test case.
var fast = Params{MemoryKiB: 64, Time: 1, Threads: 1}

// argon2idString builds an argon2id PHC string with the given parameters and
// zero-filled salt and key, for cases that must never reach argon2.
func argon2idString(m, t, p uint32, saltLen, keyLen int) string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(make([]byte, saltLen)),
		base64.RawStdEncoding.EncodeToString(make([]byte, keyLen)))
}

func mustHash(t *testing.T, pw string, p Params) string {
	t.Helper()
	h, err := Hash(pw, p)
	if err != nil {
		t.Fatalf("Hash(%q, %+v): %v", pw, p, err)
	}
	return h
}

func mustBcrypt(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("bcrypt.GenerateFromPassword: %v", err)
	}
	return string(h)
}

func TestHashFormat(t *testing.T) {
	h := mustHash(t, "correct horse battery", fast)
	want := regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !want.MatchString(h) {
		t.Fatalf("Hash = %q, want match for %s", h, want)
	}
	if h2 := mustHash(t, "correct horse battery", fast); h2 == h {
		t.Fatalf("two hashes of one password are equal (%q): salt is not random", h)
	}
	if err := Check(h); err != nil {
		t.Fatalf("Check(Hash(…)) = %v, want nil", err)
	}
}

func TestHashRefusesBadParams(t *testing.T) {
	for _, p := range []Params{
		{MemoryKiB: 64, Time: 0, Threads: 1},
		{MemoryKiB: 64, Time: 1, Threads: 0},
		{MemoryKiB: 7, Time: 1, Threads: 1},  // below 8 KiB per thread
		{MemoryKiB: 64, Time: 1, Threads: 9}, // 64 < 8*9
		{MemoryKiB: 256*1024 + 1, Time: 1, Threads: 1},
		{MemoryKiB: 64, Time: 17, Threads: 1},
		{MemoryKiB: 1024, Time: 1, Threads: 17},
	} {
		if _, err := Hash("correct horse battery", p); !errors.Is(err, ErrHashParams) {
			t.Errorf("Hash with %+v: err = %v, want ErrHashParams", p, err)
		}
	}
	for _, p := range []Params{DefaultParams(), fast, {MemoryKiB: 256 * 1024, Time: 16, Threads: 16}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v, want nil", p, err)
		}
	}
}

func TestVerify(t *testing.T) {
	const pw = "correct horse battery"
	other := Params{MemoryKiB: 128, Time: 1, Threads: 1}
	twoThreads := Params{MemoryKiB: 64, Time: 1, Threads: 2}
	twoPasses := Params{MemoryKiB: 64, Time: 2, Threads: 1}
	bcrypt2a := mustBcrypt(t, pw)

	tests := []struct {
		name       string
		pw         string
		encoded    string
		ok, rehash bool
	}{
		{"argon2id match", pw, mustHash(t, pw, fast), true, false},
		{"argon2id wrong password", "correct horse batterY", mustHash(t, pw, fast), false, false},
		{"argon2id empty password", "", mustHash(t, pw, fast), false, false},
		{"argon2id other memory", pw, mustHash(t, pw, other), true, true},
		{"argon2id other threads", pw, mustHash(t, pw, twoThreads), true, true},
		{"argon2id other time", pw, mustHash(t, pw, twoPasses), true, true},
		{"argon2id other params, wrong password", "nope", mustHash(t, pw, other), false, false},
		{"bcrypt $2a$", pw, bcrypt2a, true, true},
		{"bcrypt $2b$", pw, "$2b$" + bcrypt2a[4:], true, true},
		{"bcrypt $2y$", pw, "$2y$" + bcrypt2a[4:], true, true},
		{"bcrypt wrong password", "correct horse batterY", bcrypt2a, false, false},
		{"bcrypt $2y$ wrong password", "x", "$2y$" + bcrypt2a[4:], false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := Verify(tt.pw, tt.encoded, fast)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if ok != tt.ok || rehash != tt.rehash {
				t.Fatalf("Verify = ok %v, rehash %v; want ok %v, rehash %v", ok, rehash, tt.ok, tt.rehash)
			}
		})
	}
}

// TestVerifyRehashOnLengths: an imported argon2id hash with usher's parameters
// but a shorter salt or key is still replaced.
func TestVerifyRehashOnLengths(t *testing.T) {
	// Reference vector (phc-winner-argon2 src/test.c): "password", salt
	// "somesalt" (8 bytes), m=256, t=2, p=1, 32-byte key.
	const ref = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	ok, rehash, err := Verify("password", ref, Params{MemoryKiB: 256, Time: 2, Threads: 1})
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify = %v, %v, %v; want true, true (8-byte salt), nil", ok, rehash, err)
	}
}

// TestVerifyKnownVectors checks against hashes made by other implementations,
// which a round trip through this package alone cannot.
func TestVerifyKnownVectors(t *testing.T) {
	const long = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored"
	tests := []struct {
		name, pw, wrong, encoded string
	}{
		// phc-winner-argon2 src/test.c.
		{"argon2id m=256 p=1", "password", "Password", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"},
		{"argon2id m=256 p=2", "password", "password ", "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc"},
		// Openwall crypt_blowfish wrapper.c.
		{"bcrypt U*U", "U*U", "U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
		{"bcrypt empty", "", "x", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy"},
		{"bcrypt $2y$ non-UTF-8", "\xa3", "\xa4", "$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq"},
		{"bcrypt past 72 bytes", long, long[:71], "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok, _, err := Verify(tt.pw, tt.encoded, DefaultParams()); err != nil || !ok {
				t.Fatalf("Verify(%q) = ok %v, err %v; want ok", tt.pw, ok, err)
			}
			if ok, _, err := Verify(tt.wrong, tt.encoded, DefaultParams()); err != nil || ok {
				t.Fatalf("Verify(%q) = ok %v, err %v; want no match", tt.wrong, ok, err)
			}
		})
	}
}

// TestVerifyBcryptLongPassword: bcrypt saw only the first 72 bytes, cut
// even inside a multi-byte character, so a longer password matches a hash of
// its first 72 bytes, and bytes after 72 do not matter.
func TestVerifyBcryptLongPassword(t *testing.T) {
	long := strings.Repeat("a", 71) + "é" + strings.Repeat("z", 40) // é straddles bytes 72 and 73
	if len(long) <= 72 {
		t.Fatalf("test password is only %d bytes", len(long))
	}
	h := mustBcrypt(t, long[:72])

	tests := []struct {
		name string
		pw   string
		ok   bool
	}{
		{"whole password", long, true},
		{"first 72 bytes", long[:72], true},
		{"different after byte 72", long[:72] + "something else", true},
		{"different inside the first 72 bytes", "b" + long[1:], false},
		{"first 71 bytes", long[:71], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := Verify(tt.pw, h, fast)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if ok != tt.ok || rehash != tt.ok {
				t.Fatalf("Verify = ok %v, rehash %v; want ok %v, rehash %v", ok, rehash, tt.ok, tt.ok)
			}
		})
	}
}

func TestDefaultParams(t *testing.T) {
	const pw = "correct horse battery"
	h := mustHash(t, pw, DefaultParams())
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("Hash with defaults = %q, want prefix $argon2id$v=19$m=19456,t=2,p=1$", h)
	}
	if ok, rehash, err := Verify(pw, h, DefaultParams()); err != nil || !ok || rehash {
		t.Fatalf("Verify with defaults = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
	if ok, rehash, err := Verify(pw, h, fast); err != nil || !ok || !rehash {
		t.Fatalf("Verify against other params = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
}

// TestCheckBounds: hashes whose parameters would cost gigabytes or days are
// refused before any work. Verify is called too: without the bounds the 4 GiB
// case would allocate 4 GiB and the bcrypt cost 31 case would run for days.
func TestCheckBounds(t *testing.T) {
	bcryptWithCost := func(cost string) string {
		return "$2a$" + cost + "$" + mustBcrypt(t, "x")[7:]
	}
	tests := []struct {
		name    string
		encoded string
		want    error
	}{
		{"argon2id 4 GiB", argon2idString(4194304, 1, 1, 16, 32), ErrHashParams},
		{"argon2id just over 256 MiB", argon2idString(262145, 1, 1, 16, 32), ErrHashParams},
		{"argon2id max uint32 memory", argon2idString(4294967295, 1, 1, 16, 32), ErrHashParams},
		{"argon2id memory below 8 KiB per thread", argon2idString(31, 1, 4, 16, 32), ErrHashParams},
		{"argon2id time 0", argon2idString(64, 0, 1, 16, 32), ErrHashParams},
		{"argon2id time 17", argon2idString(64, 17, 1, 16, 32), ErrHashParams},
		{"argon2id time 4294967295", argon2idString(64, 4294967295, 1, 16, 32), ErrHashParams},
		{"argon2id threads 0", argon2idString(64, 1, 0, 16, 32), ErrHashParams},
		{"argon2id threads 17", argon2idString(1024, 1, 17, 16, 32), ErrHashParams},
		{"argon2id threads 257 (wraps to 1 as uint8)", argon2idString(4096, 1, 257, 16, 32), ErrHashParams},
		{"argon2id salt 4 bytes", argon2idString(64, 1, 1, 4, 32), ErrHashParams},
		{"argon2id salt 65 bytes", argon2idString(64, 1, 1, 65, 32), ErrHashParams},
		{"argon2id key 8 bytes", argon2idString(64, 1, 1, 16, 8), ErrHashParams},
		{"argon2id key 65 bytes", argon2idString(64, 1, 1, 16, 65), ErrHashParams},
		{"bcrypt cost 31", bcryptWithCost("31"), ErrHashParams},
		{"bcrypt cost 16", bcryptWithCost("16"), ErrHashParams},
		{"bcrypt cost 03", bcryptWithCost("03"), ErrHashParams},
		{"bcrypt cost 99", bcryptWithCost("99"), ErrHashParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.encoded); !errors.Is(err, tt.want) {
				t.Fatalf("Check(%q) = %v, want %v", tt.encoded, err, tt.want)
			}
			start := time.Now()
			ok, rehash, err := Verify("x", tt.encoded, fast)
			if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
				t.Fatalf("Verify took %v: the bound was not checked before the work", elapsed)
			}
			if ok || rehash || !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, %v, %v; want false, false, %v", ok, rehash, err, tt.want)
			}
		})
	}
	// The bounds themselves are accepted.
	for _, h := range []string{
		argon2idString(262144, 16, 16, 8, 16),
		argon2idString(8, 1, 1, 64, 64),
		bcryptWithCost("04"),
		bcryptWithCost("15"),
	} {
		if err := Check(h); err != nil {
			t.Errorf("Check(%q) = %v, want nil", h, err)
		}
	}
}

// malformed are hashes of many wrong shapes, each refused as unsupported.
// They also seed the fuzz targets.
var malformed = []string{
	"",
	"$",
	"password",
	"$argon2id$",
	"$argon2id$v=19$",
	"$argon2id$v=19$m=64,t=1,p=1$",
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$",
	"$argon2id$v=19$m=64,t=1,p=1$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$extra",
	"argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",          // no version
	"$argon2id$v=16$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",     // version 1.0
	"$argon2id$v=019$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    // leading zero
	"$argon2id$v=19$t=1,m=64,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",     // order
	"$argon2id$v=19$m=64,t=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",         // no p
	"$argon2id$v=19$m=64,t=1,p=1,k=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // extra param
	"$argon2id$v=19$m=64,m=64,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    // duplicate
	"$argon2id$v=19$m=64,t=1,p=$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=+64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=-64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=064,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=0x40,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m= 64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=99999999999999999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2id$v=19$m=4294967296,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 2^32
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",      // padded
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_",         // URL alphabet
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAA\nAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",       // line break
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAB$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",         // trailing bits
	"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",          // 4n+1 chars
	"$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("A", 600) + "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$ARGON2ID$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2i$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$argon2d$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	"$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
	"$pbkdf2-sha256$29000$N2bMOYcQ0hoDQMgZo5SSsg$mlMw5cQgvDSU5z4.Ag5r4GshCWPzRFoDUuEq6FuWm5g",
	"$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",
	"$2$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"$2x$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e",
	"$2a$",
	"$2a$05$",
	"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe",   // 59 bytes
	"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWW", // 61 bytes
	"$2a$5$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeWW",  // one-digit cost
	"$2a$+5$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"$2a$-5$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"$2a$0a$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"$2a$05XCCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe+", // standard base64 char
	"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe$",
	"$2a$05$CCCCCCCCCCCCCCCCCCCCC\x00E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
	"\xff\xfe$argon2id$",
}

func TestMalformed(t *testing.T) {
	for i, encoded := range malformed {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if err := Check(encoded); !errors.Is(err, ErrUnsupportedHash) {
				t.Fatalf("Check(%q) = %v, want ErrUnsupportedHash", encoded, err)
			}
			if ok, rehash, err := Verify("password", encoded, fast); ok || rehash || !errors.Is(err, ErrUnsupportedHash) {
				t.Fatalf("Verify(%q) = %v, %v, %v; want false, false, ErrUnsupportedHash", encoded, ok, rehash, err)
			}
		})
	}
}

func TestErrorsDoNotLeakTheHash(t *testing.T) {
	const secret = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, encoded := range []string{
		"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAB$" + secret,
		"$argon2id$v=19$m=4194304,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + secret,
		"$unknown$" + secret,
	} {
		err := Check(encoded)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Check error %q must exist and not contain the hash", err)
		}
	}
}

func TestAlgorithm(t *testing.T) {
	tests := []struct{ encoded, want string }{
		{mustHash(t, "x", fast), "argon2id"},
		{"$argon2id$", "argon2id"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "bcrypt"},
		{"$2b$05$x", "bcrypt"},
		{"$2y$05$x", "bcrypt"},
		{"$2x$05$x", "unknown"},
		{"$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$c29tZXNhbHQ", "unknown"},
		{"", "unknown"},
		{"plaintext", "unknown"},
	}
	for _, tt := range tests {
		if got := Algorithm(tt.encoded); got != tt.want {
			t.Errorf("Algorithm(%q) = %q, want %q", tt.encoded, got, tt.want)
		}
	}
}

func TestDummy(t *testing.T) {
	for _, p := range []Params{fast, {MemoryKiB: 128, Time: 2, Threads: 2}} {
		d := Dummy(p)
		if err := Check(d); err != nil {
			t.Fatalf("Check(Dummy(%+v)) = %v", p, err)
		}
		h, err := parseArgon2id(d)
		if err != nil {
			t.Fatalf("parse Dummy(%+v): %v", p, err)
		}
		if h.params != p || len(h.salt) != saltLen || len(h.key) != keyLen {
			t.Fatalf("Dummy(%+v) = %q: want exactly the parameters and lengths Hash uses", p, d)
		}
		// Exactly like a wrong password: no match, no rehash, no error.
		for _, pw := range []string{"", "password", "correct horse battery"} {
			if ok, rehash, err := Verify(pw, d, p); ok || rehash || err != nil {
				t.Fatalf("Verify(%q, Dummy) = %v, %v, %v; want false, false, nil", pw, ok, rehash, err)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Dummy with Threads 0 did not panic")
		}
	}()
	Dummy(Params{MemoryKiB: 64, Time: 1, Threads: 0})
}

// FuzzVerify: no input makes Verify panic, and Verify accepts exactly what
// Check accepts.
func FuzzVerify(f *testing.F) {
	f.Add("password", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
	f.Add("\xa3", "$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq")
	f.Add("x", argon2idString(4194304, 1, 1, 16, 32))
	for _, m := range malformed {
		f.Add("password", m)
	}
	f.Fuzz(func(t *testing.T, pw, encoded string) {
		checkErr := Check(encoded)
		// Keep each run fast: the bounds allow hashes that take seconds,
		// and what this target looks for is in the parsing.
		if checkErr == nil && expensive(encoded) {
			return
		}
		ok, rehash, err := Verify(pw, encoded, fast)
		if (err == nil) != (checkErr == nil) {
			t.Fatalf("Verify err = %v but Check err = %v", err, checkErr)
		}
		if err != nil && (ok || rehash) {
			t.Fatalf("Verify = %v, %v with error %v", ok, rehash, err)
		}
		if rehash && !ok {
			t.Fatal("rehash without a match")
		}
	})
}

// expensive reports whether verifying a hash that passed Check would take
// more than a few milliseconds.
func expensive(encoded string) bool {
	if h, err := parseArgon2id(encoded); err == nil {
		return uint64(h.params.MemoryKiB)*uint64(h.params.Time) > 4096
	}
	return encoded[4:6] > "06" // bcrypt cost
}

// FuzzCheck: no input makes Check panic, an accepted argon2id hash re-encodes
// to the same string (one hash, one spelling), and only known algorithms pass.
func FuzzCheck(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
	f.Add(argon2idString(4194304, 1, 1, 16, 32))
	for _, m := range malformed {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, encoded string) {
		err := Check(encoded)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedHash) && !errors.Is(err, ErrHashParams) {
				t.Fatalf("Check error %v wraps neither sentinel", err)
			}
			return
		}
		switch Algorithm(encoded) {
		case "argon2id":
			h, err := parseArgon2id(encoded)
			if err != nil {
				t.Fatalf("Check accepted what parseArgon2id refuses: %v", err)
			}
			if got := encodeArgon2id(h.params, h.salt, h.key); got != encoded {
				t.Fatalf("re-encoded as %q", got)
			}
		case "bcrypt":
		default:
			t.Fatalf("Check accepted an %q hash", Algorithm(encoded))
		}
	})
}

func BenchmarkHashDefault(b *testing.B) {
	p := DefaultParams()
	for b.Loop() {
		if _, err := Hash("correct horse battery", p); err != nil {
			b.Fatal(err)
		}
	}
}
