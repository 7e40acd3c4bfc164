package password

import (
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// Length bounds of a new password, in Unicode code points rather than bytes,
// so that a password in any script gets the same room.
const (
	minLength = 8
	maxLength = 256
)

// Validate checks a new password against usher's rules and returns "" if it
// passes, or else a message for the `password` field of a 422 answer: 8 to 256
// code points, not the account's email (ignoring case), and not in the shipped
// list of common passwords (ignoring case).
func Validate(pw, email string) string {
	switch n := utf8.RuneCountInString(pw); {
	case n < minLength:
		return fmt.Sprintf("must be at least %d characters", minLength)
	case n > maxLength:
		return fmt.Sprintf("must be at most %d characters", maxLength)
	}
	if strings.EqualFold(pw, email) {
		return "must not be your email address"
	}
	if _, common := commonPasswords()[strings.ToLower(pw)]; common {
		return "is too common; choose a less guessable password"
	}
	return ""
}

// commonPasswordsText is the list of common passwords; its header names the
// sources and their licences.
//
//go:embed common_passwords.txt
var commonPasswordsText string

// commonPasswords is the embedded list as a set, built on first use: about
// 18,000 entries that only registration and password changes need.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 20000)
	for line := range strings.Lines(commonPasswordsText) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[line] = struct{}{}
	}
	return set
})
