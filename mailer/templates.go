package mailer

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/usher-auth/usher/internal/event"
)

// The templates of each purpose (an event type that sends mail):
// templates/<type>.txt, whose "subject" block is the subject, and
// templates/<type>.html.
//
//go:embed templates/*.txt templates/*.html
var templateFiles embed.FS

// view is what a template sees.
type view struct {
	To         string
	Link       string // the verification or reset link, with its token
	Subject    string // an admin's subject (email.requested)
	Text       string // an admin's text (email.requested)
	EventID    string
	OccurredAt time.Time
}

// templates holds the parsed templates per purpose.
type templates struct {
	text map[string]*texttemplate.Template
	html map[string]*htmltemplate.Template
}

// errTemplate wraps every rendering failure: such an event is dead-lettered
// at once, since a retry would fail the same way.
var errTemplate = errors.New("template")

// parseTemplates parses templates/<type>.txt and .html from fsys for each
// type that sends mail.
func parseTemplates(fsys fs.FS) (*templates, error) {
	ts := &templates{text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	for _, purpose := range MailTypes() {
		tt, err := texttemplate.New(purpose+".txt").Option("missingkey=error").ParseFS(fsys, "templates/"+purpose+".txt")
		if err != nil {
			return nil, fmt.Errorf("mail templates: %w", err)
		}
		if tt.Lookup("subject") == nil {
			return nil, fmt.Errorf("mail templates: %s.txt has no subject block", purpose)
		}
		ht, err := htmltemplate.New(purpose+".html").Option("missingkey=error").ParseFS(fsys, "templates/"+purpose+".html")
		if err != nil {
			return nil, fmt.Errorf("mail templates: %w", err)
		}
		ts.text[purpose], ts.html[purpose] = tt, ht
	}
	return ts, nil
}

// email is one rendered email.
type email struct {
	To, Subject, Text, HTML string
}

// render renders the email that m decides. link builds the link of a
// purpose that has one; its token goes in URL-escaped.
func (ts *templates) render(env *event.Envelope, m event.Mail, links map[string]string) (email, error) {
	tt, ht := ts.text[m.Purpose], ts.html[m.Purpose]
	if tt == nil || ht == nil {
		return email{}, fmt.Errorf("%w: no template for purpose %q", errTemplate, m.Purpose)
	}
	v := view{To: m.To, Subject: m.Subject, Text: m.Text, EventID: env.ID, OccurredAt: env.OccurredAt}
	if v.OccurredAt.IsZero() {
		v.OccurredAt = time.Now()
	}
	if tmpl, ok := links[m.Purpose]; ok {
		if m.Token == "" {
			return email{}, fmt.Errorf("%w: %s without a token", errTemplate, m.Purpose)
		}
		v.Link = strings.ReplaceAll(tmpl, "{token}", url.QueryEscape(m.Token))
	}
	var subject, text, html bytes.Buffer
	if err := tt.ExecuteTemplate(&subject, "subject", v); err != nil {
		return email{}, fmt.Errorf("%w: %s subject: %w", errTemplate, m.Purpose, err)
	}
	if err := tt.Execute(&text, v); err != nil {
		return email{}, fmt.Errorf("%w: %s text: %w", errTemplate, m.Purpose, err)
	}
	if err := ht.Execute(&html, v); err != nil {
		return email{}, fmt.Errorf("%w: %s html: %w", errTemplate, m.Purpose, err)
	}
	// A subject is one line: a line break in an admin's subject must not
	// start a header of its own.
	subj := strings.Join(strings.Fields(subject.String()), " ")
	if subj == "" {
		return email{}, fmt.Errorf("%w: %s: empty subject", errTemplate, m.Purpose)
	}
	return email{To: m.To, Subject: subj, Text: text.String(), HTML: html.String()}, nil
}
