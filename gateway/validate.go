package gateway

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/usher-auth/usher/internal/password"
)

// problems collects validation failures per field, for one 422 answer that
// names each bad field.
type problems map[string]string

func (p problems) add(field, msg string) {
	if _, ok := p[field]; !ok {
		p[field] = msg
	}
}

// email checks an address field and returns it lower-cased.
func (p problems) email(field, s string) string {
	email, msg := CheckEmail(s)
	if msg != "" {
		p.add(field, msg)
	}
	return email
}

// CheckEmail checks a bare address (what net/mail parses back to the same
// string, no display name, no CR/LF, at most 254 bytes). It returns the
// address lower-cased, as stored, or a message saying what is wrong.
func CheckEmail(s string) (string, string) {
	switch {
	case s == "":
		return "", "is required"
	case len(s) > 254:
		return "", "must be at most 254 bytes"
	case strings.ContainsAny(s, "\r\n"):
		return "", "must not contain line breaks"
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", "must be a bare email address such as name@example.com"
	}
	return strings.ToLower(s), ""
}

// name checks a display name: at most 100 code points, printable.
func (p problems) name(field, s string) {
	switch {
	case !utf8.ValidString(s):
		p.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > 100:
		p.add(field, "must be at most 100 characters")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		p.add(field, "must not contain control characters")
	}
}

// newPassword applies the password rules to a password being set.
func (p problems) newPassword(field, pw, email string) {
	if msg := password.Validate(pw, email); msg != "" {
		p.add(field, msg)
	}
}

// present checks a password being presented: the rules may have changed
// since it was set, so only its presence and a sane size are checked.
func (p problems) present(field, s string) {
	switch {
	case s == "":
		p.add(field, "is required")
	case utf8.RuneCountInString(s) > 256:
		p.add(field, "must be at most 256 characters")
	}
}
