package gateway

import (
	"embed"
	"html/template"
	"net/http"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pages = template.Must(template.ParseFS(pageFiles, "pages/*.html"))

// page is what the templates show.
type page struct {
	Title   string
	Token   string
	Message string
	Error   string
}

// pageCSP lets a page use its own inline styles and post forms to usher,
// and nothing else.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// pageHeaders keep every HTML page private and unframeable: no referrer
// leaks a token in its URL, nothing is cached, nothing loads from elsewhere.
func pageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", pageCSP)
}

// specHeaders are the headers of a served spec document.
func specHeaders(h http.Header) {
	h.Set("Content-Type", "application/yaml")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=300")
}

func writePage(w http.ResponseWriter, status int, name string, p page) {
	pageHeaders(w.Header())
	w.WriteHeader(status)
	pages.ExecuteTemplate(w, name, p)
}

// tokenPage serves the page a link opens. It only shows a form: a link
// scanner's GET must not use the token.
func (s *server) tokenPage(name, title string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("token")
		if tok == "" || len(tok) > 128 {
			writePage(w, http.StatusBadRequest, "result.html", page{Title: title, Message: "This link is incomplete. Copy the whole link from the email.", Error: "x"})
			return
		}
		writePage(w, http.StatusOK, name, page{Title: title, Token: tok})
	})
}
