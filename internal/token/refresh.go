package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Refresh tokens are "<sid>.<counter>.<mac>":
//
//   - sid: the session id as a canonical UUID, 36 ASCII bytes, lower-case hex
//     in 8-4-4-4-12 groups (any version or variant);
//   - counter: the session's refresh generation as ASCII decimal, no sign,
//     no leading zeros ("0" itself is fine), at most 2^53;
//   - mac: HMAC-SHA256 under the refresh key from Derive over the bytes
//     sid ‖ 0x00 ‖ counter, exactly as they appear in the token, in
//     unpadded base64url (43 characters).
//
// The 0x00 cannot occur in either field, so no two (sid, counter) pairs give
// the same MAC input. With one canonical spelling per (sid, counter), equal
// tokens are equal strings and a token cannot be re-spelled to look new.
const (
	uuidLen        = 36
	maxCounter     = 1 << 53
	maxCounterLen  = 16 // len("9007199254740992")
	macLen         = 43 // base64.RawURLEncoding.EncodedLen(sha256.Size)
	maxRefreshSize = uuidLen + 1 + maxCounterLen + 1 + macLen
)

// Refresh returns the refresh token for generation counter of session sid.
// The same inputs give the same token, which is how a refresh within the
// grace window hands back the successor the first refresh got.
//
// It panics if k was not made by Derive, sid is not a canonical lower-case
// UUID or counter is outside [0, 2^53]: a token ParseRefresh would reject
// is a programming error (sids come from the database), better found at
// once than as a 401 later.
func (k Keys) Refresh(sid string, counter int64) string {
	if !k.derived() {
		panic("token: Refresh with Keys not made by Derive")
	}
	if !canonicalUUID(sid) || counter < 0 || counter > maxCounter {
		panic(fmt.Sprintf("token: Refresh(%q, %d): sid must be a lower-case UUID, counter in [0, 2^53]", sid, counter))
	}
	c := strconv.FormatInt(counter, 10)
	return sid + "." + c + "." + k.refreshMAC(sid, c)
}

// ParseRefresh checks a refresh token and returns its session id and
// counter. Anything but a token Refresh made with the same secret is
// ErrInvalid. It says nothing about whether the session still exists or the
// counter is current: that is the store's to decide.
func (k Keys) ParseRefresh(tok string) (sid string, counter int64, err error) {
	if !k.derived() {
		return "", 0, fmt.Errorf("token: ParseRefresh with Keys not made by Derive")
	}
	if len(tok) > maxRefreshSize {
		return "", 0, fmt.Errorf("%w: refresh token longer than %d bytes", ErrInvalid, maxRefreshSize)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", 0, fmt.Errorf("%w: refresh token has %d parts, want 3", ErrInvalid, len(parts))
	}
	sid, c, mac := parts[0], parts[1], parts[2]
	if !canonicalUUID(sid) {
		return "", 0, fmt.Errorf("%w: refresh token sid is not a lower-case UUID", ErrInvalid)
	}
	counter, ok := parseCounter(c)
	if !ok {
		return "", 0, fmt.Errorf("%w: refresh token counter is not canonical decimal in [0, 2^53]", ErrInvalid)
	}
	// Comparing the encoded MACs rejects every other spelling of the same
	// bytes; hmac.Equal keeps the comparison time independent of where the
	// strings differ.
	if !hmac.Equal([]byte(mac), []byte(k.refreshMAC(sid, c))) {
		return "", 0, fmt.Errorf("%w: refresh token MAC does not match", ErrInvalid)
	}
	return sid, counter, nil
}

func (k Keys) refreshMAC(sid, counter string) string {
	m := hmac.New(sha256.New, k.refresh)
	m.Write([]byte(sid))
	m.Write([]byte{0})
	m.Write([]byte(counter))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// canonicalUUID reports whether s is 8-4-4-4-12 lower-case hex, as
// PostgreSQL prints a uuid.
func canonicalUUID(s string) bool {
	if len(s) != uuidLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// parseCounter accepts exactly the strings strconv.FormatInt writes for
// 0 ≤ n ≤ 2^53: ParseInt alone would also take "+1" and "007".
func parseCounter(s string) (int64, bool) {
	if len(s) == 0 || len(s) > maxCounterLen || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxCounter {
		return 0, false
	}
	return n, true
}
