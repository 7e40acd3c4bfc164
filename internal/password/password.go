// Package password hashes and verifies usher's user passwords and holds the
// rules a new password must meet.
//
// New hashes are argon2id PHC strings. bcrypt hashes imported from other
// systems verify too, and Verify asks for them to be replaced; so it does for
// argon2id hashes made with other parameters than the current ones. Imported
// hashes carry their own cost parameters, so Check bounds them before any
// work: one absurd row must not be able to exhaust the server's memory or CPU.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/usher-auth/usher/internal/argon2"
)

var (
	// ErrUnsupportedHash means an encoded hash is not a well-formed argon2id
	// (version 19) or bcrypt ($2a$, $2b$, $2y$) hash.
	ErrUnsupportedHash = errors.New("unsupported password hash")
	// ErrHashParams means a hash, or the Params to make one, has cost
	// parameters or lengths outside the bounds this package accepts.
	ErrHashParams = errors.New("password hash parameters out of bounds")
)

// Bounds on the parameters of any hash Verify will compute. They are far above
// what usher uses itself and cover the usual presets of other systems
// (libsodium's "moderate" is 256 MiB, RFC 9106's second recommendation 64 MiB,
// t=3, p=4), while one verification still costs at most 256 MiB and a few
// seconds. A hash beyond them is refused rather than computed.
const (
	maxMemoryKiB = 256 * 1024 // 256 MiB
	maxTime      = 16
	maxThreads   = 16

	// Salt and key lengths, in bytes, of imported argon2id hashes. Shorter
	// salts or keys are not worth the trust; longer ones are not seen in
	// practice.
	minSaltLen, maxSaltLen = 8, 64
	minKeyLen, maxKeyLen   = 16, 64

	// bcrypt's cost is a power of two: 15 is already about three seconds on
	// one core, and 31 would run for days.
	minBcryptCost, maxBcryptCost = bcrypt.MinCost, 15

	// bcrypt uses only the first 72 bytes of a password.
	bcryptMaxPassword = 72

	// The longest encoded hash within the bounds is about 210 bytes; anything
	// much longer is refused before it is split or decoded.
	maxEncodedLen = 512
)

// Hashes made by Hash use a 16-byte salt and a 32-byte key.
const (
	saltLen = 16
	keyLen  = 32
)

// argon2Version is the only argon2 version accepted: 0x13, written "v=19".
const argon2Version = argon2.Version

// Params are argon2id parameters.
type Params struct {
	MemoryKiB uint32 // memory in KiB
	Time      uint32 // passes over the memory
	Threads   uint8  // lanes, each computed by its own goroutine
}

// DefaultParams returns OWASP's recommended argon2id parameters: 19 MiB,
// two passes, one thread. One hash then takes a few tens of milliseconds of
// one core, which bounds how many logins a node serves per second.
func DefaultParams() Params {
	return Params{MemoryKiB: 19456, Time: 2, Threads: 1}
}

// Validate reports whether Hash can use p: time and threads at least 1,
// memory at least 8 KiB per thread (argon2's own minimum), and each within the
// bounds Check applies to imported hashes, so that every hash usher makes
// also passes Check. Call it on configured Params at startup.
func (p Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id time %d not in 1..%d: %w", p.Time, maxTime, ErrHashParams)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("argon2id threads %d not in 1..%d: %w", p.Threads, maxThreads, ErrHashParams)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB not in %d..%d KiB: %w",
			p.MemoryKiB, 8*uint32(p.Threads), maxMemoryKiB, ErrHashParams)
	}
	return nil
}

// Hash returns the argon2id PHC string of pw with parameters p, a random
// 16-byte salt and a 32-byte key:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in unpadded standard base64. It fails only if p is not
// valid (see Params.Validate).
func Hash(pw string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails since Go 1.24; it crashes the program instead
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	return encodeArgon2id(p, salt, key), nil
}

// Verify reports whether pw matches encoded, an argon2id PHC string or an
// imported bcrypt hash. rehash is true when pw matched but encoded should be
// replaced by Hash(pw, p): it is bcrypt, or argon2id with parameters, salt or
// key length other than those Hash uses with p.
//
// encoded is checked first (see Check), so an absurd imported hash costs no
// work and yields an error wrapping ErrUnsupportedHash or ErrHashParams. A
// wrong password is not an error: ok is false and err nil. Keys are compared
// in constant time.
//
// bcrypt only ever used the first 72 bytes of a password, so Verify compares
// only those, cut at byte 72 even inside a multi-byte character as the C
// implementations did: users imported with a longer password can still log
// in, and anything they type after byte 72 is ignored until the rehash.
func Verify(pw, encoded string, p Params) (ok, rehash bool, err error) {
	switch Algorithm(encoded) {
	case "argon2id":
		h, err := parseArgon2id(encoded)
		if err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		key := argon2.IDKey([]byte(pw), h.salt, h.params.Time, h.params.MemoryKiB, h.params.Threads, uint32(len(h.key)))
		if subtle.ConstantTimeCompare(key, h.key) != 1 {
			return false, false, nil
		}
		outdated := h.params != p || len(h.salt) != saltLen || len(h.key) != keyLen
		return true, outdated, nil
	case "bcrypt":
		if err := checkBcrypt(encoded); err != nil {
			return false, false, fmt.Errorf("verify password: %w", err)
		}
		// x/crypto's GenerateFromPassword refuses passwords over 72 bytes
		// (ErrPasswordTooLong); cutting them here keeps imported users able
		// to log in whether or not CompareHashAndPassword ever does the same.
		b := []byte(pw)
		if len(b) > bcryptMaxPassword {
			b = b[:bcryptMaxPassword]
		}
		switch err := bcrypt.CompareHashAndPassword([]byte(encoded), b); {
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, false, nil
		case err != nil:
			return false, false, fmt.Errorf("verify password: bcrypt: %w", err)
		}
		return true, true, nil
	default:
		return false, false, fmt.Errorf("verify password: %w", errUnrecognised)
	}
}

// errUnrecognised names neither the hash nor its beginning: a stored hash
// is not something to put in a log.
var errUnrecognised = fmt.Errorf("neither argon2id nor bcrypt: %w", ErrUnsupportedHash)

// Check parses encoded and reports whether Verify would accept it, without
// computing anything expensive. Use it on hashes imported from other systems.
//
// argon2id: exactly "$argon2id$v=19$m=M,t=T,p=P$salt$key" with canonical
// decimals, unpadded standard base64, M at most 256 MiB and at least 8 KiB per
// thread, T in 1..16, P in 1..16, an 8 to 64-byte salt and a 16 to 64-byte
// key. bcrypt: $2a$, $2b$ or $2y$ (the same algorithm under three names; the
// buggy $2x$ is refused), cost 4..15.
//
// The error wraps ErrHashParams for a well-formed hash with parameters out of
// bounds and ErrUnsupportedHash otherwise.
func Check(encoded string) error {
	var err error
	switch Algorithm(encoded) {
	case "argon2id":
		_, err = parseArgon2id(encoded)
	case "bcrypt":
		err = checkBcrypt(encoded)
	default:
		err = errUnrecognised
	}
	if err != nil {
		return fmt.Errorf("check password hash: %w", err)
	}
	return nil
}

// Algorithm names the algorithm of encoded by its prefix alone, for metrics
// and logs: "argon2id", "bcrypt" or "unknown". It does not mean encoded is
// well-formed; Check says that.
func Algorithm(encoded string) string {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		return "bcrypt"
	default:
		return "unknown"
	}
}

// Dummy returns a well-formed argon2id hash with parameters p that no
// password matches. A login for an unknown email verifies the password
// against it, so it spends exactly the one argon2id computation a wrong
// password spends and the two cannot be told apart by their time.
//
// Its salt and key are random bytes: argon2id's output is indistinguishable
// from random, so this costs the same to verify as the hash of a random
// password while costing nothing to make.
//
// Dummy panics if p is not valid, as a login could otherwise answer an
// unknown email faster than a wrong password; check configured Params with
// Params.Validate at startup.
func Dummy(p Params) string {
	if err := p.Validate(); err != nil {
		panic(fmt.Sprintf("password.Dummy: %v", err))
	}
	salt := make([]byte, saltLen)
	key := make([]byte, keyLen)
	rand.Read(salt)
	rand.Read(key)
	return encodeArgon2id(p, salt, key)
}

// argon2idHash is a parsed argon2id PHC string.
type argon2idHash struct {
	params    Params
	salt, key []byte
}

func encodeArgon2id(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key))
}

// parseArgon2id parses and bounds an argon2id PHC string. It accepts only the
// canonical form that the reference implementation, libsodium and usher
// write, so a hash that parses re-encodes to exactly the same string. Every
// number is bounded before anything is allocated for it.
func parseArgon2id(encoded string) (argon2idHash, error) {
	malformed := func(what string) (argon2idHash, error) {
		return argon2idHash{}, fmt.Errorf("malformed argon2id hash: %s: %w", what, ErrUnsupportedHash)
	}
	if len(encoded) > maxEncodedLen {
		return malformed("too long")
	}
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	fields := strings.Split(encoded, "$")
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" {
		return malformed("want $argon2id$v=19$m=M,t=T,p=P$salt$key")
	}
	if fields[2] != fmt.Sprintf("v=%d", argon2Version) {
		return malformed("version is not v=19")
	}

	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return malformed("want parameters m=M,t=T,p=P")
	}
	m, okM := decimalParam(params[0], "m=")
	t, okT := decimalParam(params[1], "t=")
	p, okP := decimalParam(params[2], "p=")
	if !okM || !okT || !okP {
		return malformed("want parameters m=M,t=T,p=P")
	}
	// Bound p before it is narrowed to the uint8 argon2 takes.
	if p < 1 || p > maxThreads {
		return argon2idHash{}, fmt.Errorf("argon2id threads %d not in 1..%d: %w", p, maxThreads, ErrHashParams)
	}
	h := argon2idHash{params: Params{MemoryKiB: m, Time: t, Threads: uint8(p)}}
	if err := h.params.Validate(); err != nil {
		return argon2idHash{}, err
	}

	var err error
	if h.salt, err = decodeB64(fields[4]); err != nil {
		return malformed("salt is not unpadded standard base64")
	}
	if h.key, err = decodeB64(fields[5]); err != nil {
		return malformed("key is not unpadded standard base64")
	}
	if len(h.salt) < minSaltLen || len(h.salt) > maxSaltLen {
		return argon2idHash{}, fmt.Errorf("argon2id salt of %d bytes not in %d..%d: %w",
			len(h.salt), minSaltLen, maxSaltLen, ErrHashParams)
	}
	if len(h.key) < minKeyLen || len(h.key) > maxKeyLen {
		return argon2idHash{}, fmt.Errorf("argon2id key of %d bytes not in %d..%d: %w",
			len(h.key), minKeyLen, maxKeyLen, ErrHashParams)
	}
	return h, nil
}

// decimalParam parses "name=N" where N is a canonical decimal (no sign, no
// leading zero) that fits in 32 bits.
func decimalParam(s, name string) (uint32, bool) {
	v, ok := strings.CutPrefix(s, name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, false
	}
	return uint32(n), true
}

// decodeB64 decodes unpadded standard base64, refusing what the decoder
// would otherwise forgive (line breaks, non-zero trailing bits), so that one
// hash has one spelling.
func decodeB64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.RawStdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical")
	}
	return b, nil
}

// checkBcrypt checks the shape and cost of a bcrypt hash:
// "$2a$" + two-digit cost + "$" + 53 characters of bcrypt's base64 alphabet
// (22 of salt, 31 of hash). The cost is read here, not by x/crypto, so that a
// cost of 31 is refused before anyone starts 2^31 rounds.
func checkBcrypt(encoded string) error {
	const encodedLen = 60
	if len(encoded) != encodedLen || encoded[6] != '$' {
		return fmt.Errorf("malformed bcrypt hash: want $2a$NN$ and 53 characters: %w", ErrUnsupportedHash)
	}
	d1, d2 := encoded[4], encoded[5]
	if !isDigit(d1) || !isDigit(d2) {
		return fmt.Errorf("malformed bcrypt hash: cost is not two digits: %w", ErrUnsupportedHash)
	}
	cost := int(d1-'0')*10 + int(d2-'0')
	for _, c := range []byte(encoded[7:]) {
		if !isBcryptB64(c) {
			return fmt.Errorf("malformed bcrypt hash: salt or hash has a character outside ./A-Za-z0-9: %w", ErrUnsupportedHash)
		}
	}
	if cost < minBcryptCost || cost > maxBcryptCost {
		return fmt.Errorf("bcrypt cost %d not in %d..%d: %w", cost, minBcryptCost, maxBcryptCost, ErrHashParams)
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isBcryptB64(c byte) bool {
	return c == '.' || c == '/' || isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}
