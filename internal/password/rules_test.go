package password

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidate(t *testing.T) {
	const email = "alice@example.com"
	tests := []struct {
		name string
		pw   string
		want string
	}{
		{"ok", "correct horse battery", ""},
		{"ok with spaces and symbols", "tr0ub4dor & 3 ponies!", ""},
		{"empty", "", "must be at least 8 characters"},
		{"7 code points", "xK4#pq9", "must be at least 8 characters"},
		{"7 code points in 14 bytes", "ÿøüéàçñ", "must be at least 8 characters"},
		{"8 code points with multibyte chars", "ÿøüéàçñ1", ""},
		{"8 code points in 32 bytes", "🔑🔒🔓🐉🦄🌵🍀🎲", ""},
		{"7 code points in 28 bytes", "🔑🔒🔓🐉🦄🌵🍀"[4:], "must be at least 8 characters"},
		{"256 code points", strings.Repeat("é", 256), ""},
		{"257 code points", strings.Repeat("é", 257), "must be at most 256 characters"},
		{"257 ASCII", strings.Repeat("ab", 128) + "c", "must be at most 256 characters"},
		{"equal to email", email, "must not be your email address"},
		{"equal to email, other case", "Alice@Example.COM", "must not be your email address"},
		{"common password1", "password1", "is too common; choose a less guessable password"},
		{"common qwertyuiop", "qwertyuiop", "is too common; choose a less guessable password"},
		{"common, upper case", "QWERTYUIOP", "is too common; choose a less guessable password"},
		{"common, mixed case", "PassWord1", "is too common; choose a less guessable password"},
		{"common sequence", "abcdefgh", "is too common; choose a less guessable password"},
		{"common repeat", "aaaaaaaa", "is too common; choose a less guessable password"},
		{"common digits", "87654321", "is too common; choose a less guessable password"},
		{"common password, longer", "password1234x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Validate(tt.pw, email); got != tt.want {
				t.Fatalf("Validate(%q) = %q, want %q", tt.pw, got, tt.want)
			}
		})
	}
}

// TestValidateOtherEmail: a password that is not the user's email
// passes even when it is someone else's.
func TestValidateOtherEmail(t *testing.T) {
	if got := Validate("alice@example.com", "bob@example.com"); got != "" {
		t.Fatalf("Validate(alice's email, bob) = %q, want \"\"", got)
	}
}

// TestCommonPasswordList: the embedded list loaded as the header promises:
// many entries, lower-case, each long enough to matter, no comment lines.
func TestCommonPasswordList(t *testing.T) {
	set := commonPasswords()
	if len(set) < 15000 {
		t.Fatalf("list has %d passwords, want more than 15000", len(set))
	}
	for pw := range set {
		if pw != strings.ToLower(pw) || utf8.RuneCountInString(pw) < minLength || strings.HasPrefix(pw, "#") || strings.TrimSpace(pw) != pw {
			t.Fatalf("list entry %q is not lower-case, at least %d characters, trimmed and not a comment", pw, minLength)
		}
	}
	for _, pw := range []string{"password", "password1", "iloveyou", "12345678", "qwertyuiop", "1q2w3e4r"} {
		if _, ok := set[pw]; !ok {
			t.Errorf("list lacks %q", pw)
		}
	}
}
