package gateway

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// spec is the OpenAPI document of the whole API; it changes together with
// API.md and routes.go (docs_test.go holds the three together).
//
//go:embed openapi.yaml
var spec []byte

// OpenAPI returns the OpenAPI document the gateway serves.
func OpenAPI() []byte { return bytes.Clone(spec) }

// document serves an embedded spec file.
func (s *server) document(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		specHeaders(w.Header())
		w.Write(doc)
	})
}

// docsPage serves a page rendered once from a spec.
func (s *server) docsPage(render func() ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, err := render()
		if err != nil {
			s.log.Error("render docs", "request_id", requestID(r), "err", err)
			writeProblem(w, "internal", "internal error")
			return
		}
		pageHeaders(w.Header())
		w.Write(page)
	})
}

// docsHTML renders the page once, from the embedded document.
var docsHTML = sync.OnceValues(func() ([]byte, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	var buf bytes.Buffer
	if err := docsTemplate.Execute(&buf, docsView(doc)); err != nil {
		return nil, fmt.Errorf("render docs: %w", err)
	}
	return buf.Bytes(), nil
})

type docsGroup struct {
	Name, Description string
	Ops               []docsOp
}

type docsOp struct {
	Method, Path, Auth, Summary, Description string
	Params, Body                             []string
	BodyTypes                                string
	Success, Failure                         []string
}

type docsCode struct {
	Code, Meaning string
	Status        int
}

type docsData struct {
	Title, Version, Description string
	Groups                      []docsGroup
	Codes                       []docsCode
}

// methodOrder lists a path's operations the way people read them.
var methodOrder = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func docsView(doc *openapi3.T) docsData {
	d := docsData{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	groups := map[string]*docsGroup{}
	var order []string
	for _, t := range doc.Tags {
		groups[t.Name] = &docsGroup{Name: t.Name, Description: t.Description}
		order = append(order, t.Name)
	}
	paths := doc.Paths.Map()
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		ops := paths[path].Operations()
		for _, method := range methodOrder {
			op := ops[method]
			if op == nil {
				continue
			}
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			g := groups[tag]
			if g == nil {
				g = &docsGroup{Name: tag}
				groups[tag] = g
				order = append(order, tag)
			}
			g.Ops = append(g.Ops, opView(doc, method, path, op))
		}
	}
	for _, name := range order {
		if g := groups[name]; len(g.Ops) > 0 {
			d.Groups = append(d.Groups, *g)
		}
	}
	if p := doc.Components.Schemas["Problem"]; p != nil && p.Value != nil {
		if c := p.Value.Properties["code"]; c != nil && c.Value != nil {
			meanings, _ := c.Value.Extensions["x-enum-descriptions"].([]any)
			for i, code := range c.Value.Enum {
				dc := docsCode{Code: fmt.Sprint(code), Status: statusOf[fmt.Sprint(code)]}
				if i < len(meanings) {
					dc.Meaning = fmt.Sprint(meanings[i])
				}
				d.Codes = append(d.Codes, dc)
			}
		}
	}
	return d
}

func opView(doc *openapi3.T, method, path string, op *openapi3.Operation) docsOp {
	v := docsOp{Method: method, Path: path, Auth: "–", Summary: op.Summary, Description: op.Description}
	if op.Security != nil && len(*op.Security) > 0 {
		v.Auth = "Bearer"
		if slices.Contains(op.Tags, "admin") {
			v.Auth = "Bearer, admin"
		}
	}
	for _, p := range op.Parameters {
		if p.Value == nil || p.Value.In != openapi3.ParameterInQuery {
			continue
		}
		v.Params = append(v.Params, field(p.Value.Name, p.Value.Required, p.Value.Schema))
	}
	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		v.BodyTypes = strings.Join(slices.Sorted(maps.Keys(rb.Value.Content)), " or ")
		if mt := rb.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil && mt.Schema.Value != nil {
			s := mt.Schema.Value
			for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
				v.Body = append(v.Body, field(name, slices.Contains(s.Required, name), s.Properties[name]))
			}
		}
	}
	for _, code := range slices.Sorted(maps.Keys(op.Responses.Map())) {
		if strings.HasPrefix(code, "2") {
			v.Success = append(v.Success, code)
		} else {
			v.Failure = append(v.Failure, code)
		}
	}
	return v
}

// field describes one body field or query parameter: its name, * when
// required, and its limits.
func field(name string, required bool, ref *openapi3.SchemaRef) string {
	out := name
	if required {
		out += "*"
	}
	if ref == nil || ref.Value == nil {
		return out
	}
	s := ref.Value
	var notes []string
	if s.Type != nil {
		notes = append(notes, strings.Join(s.Type.Slice(), "|"))
	}
	switch {
	case s.MinLength > 0 && s.MaxLength != nil:
		notes = append(notes, fmt.Sprintf("%d–%d chars", s.MinLength, *s.MaxLength))
	case s.MaxLength != nil:
		notes = append(notes, fmt.Sprintf("≤ %d chars", *s.MaxLength))
	}
	if s.Min != nil && s.Max != nil {
		notes = append(notes, fmt.Sprintf("%g–%g", *s.Min, *s.Max))
	}
	if len(s.Enum) > 0 {
		var vals []string
		for _, e := range s.Enum {
			vals = append(vals, fmt.Sprint(e))
		}
		notes = append(notes, "one of "+strings.Join(vals, ", "))
	}
	if s.Default != nil {
		notes = append(notes, fmt.Sprintf("default %v", s.Default))
	}
	if len(notes) > 0 {
		out += " (" + strings.Join(notes, "; ") + ")"
	}
	return out
}

// prose renders the document's short Markdown: paragraphs, "- " lists and
// `code` spans. Everything else is escaped text.
func prose(s string) template.HTML {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(s), "\n\n") {
		lines := strings.Split(strings.TrimSpace(para), "\n")
		if strings.HasPrefix(lines[0], "- ") {
			b.WriteString("<ul>")
			var item []string
			flush := func() {
				if len(item) > 0 {
					b.WriteString("<li>" + string(inline(strings.Join(item, " "))) + "</li>")
				}
				item = nil
			}
			for _, l := range lines {
				l = strings.TrimSpace(l)
				if rest, ok := strings.CutPrefix(l, "- "); ok {
					flush()
					l = rest
				}
				item = append(item, l)
			}
			flush()
			b.WriteString("</ul>")
			continue
		}
		for i := range lines {
			lines[i] = strings.TrimSpace(lines[i])
		}
		b.WriteString("<p>" + string(inline(strings.Join(lines, " "))) + "</p>")
	}
	return template.HTML(b.String())
}

// inline escapes s and turns `spans` into <code>.
func inline(s string) template.HTML {
	var b strings.Builder
	for i, part := range strings.Split(s, "`") {
		esc := template.HTMLEscapeString(part)
		if i%2 == 1 {
			esc = "<code>" + esc + "</code>"
		}
		b.WriteString(esc)
	}
	return template.HTML(b.String())
}

var docsTemplate = template.Must(template.New("docs").Funcs(template.FuncMap{
	"prose":  prose,
	"inline": inline,
	"lower":  strings.ToLower,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
code, .path { font-family: ui-monospace, monospace; font-size: 0.92em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
th, td { text-align: left; vertical-align: top; padding: 0.4rem 0.6rem; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
.method { font-weight: 600; font-family: ui-monospace, monospace; }
.get { color: #0b6e3a; } .post { color: #8a4b00; } .patch { color: #5b3fa0; } .delete { color: #a11; }
.muted { color: #555; font-size: 0.9em; }
ul.fields { margin: 0; padding-left: 1.1rem; }
</style>
</head>
<body>
<h1>{{.Title}} API <span class="muted">v{{.Version}}</span></h1>
{{prose .Description}}
<p>Machine-readable: <a href="/docs/openapi.yaml">/docs/openapi.yaml</a> (OpenAPI 3.0).
Domain events: <a href="/docs/asyncapi">/docs/asyncapi</a> (<a href="/docs/asyncapi.yaml">AsyncAPI document</a>).</p>
<p class="muted">In the tables, * marks a required field; lengths are in Unicode code points (an email is also at most 254 bytes).</p>
{{range .Groups}}
<h2 id="{{.Name}}">{{.Name}}</h2>
{{if .Description}}<p>{{inline .Description}}</p>{{end}}
<table>
<tr><th>Route</th><th>Auth</th><th>What it does</th><th>Input</th><th>Responses</th></tr>
{{range .Ops}}<tr>
<td><span class="method {{lower .Method}}">{{.Method}}</span> <span class="path">{{.Path}}</span></td>
<td>{{.Auth}}</td>
<td>{{.Summary}}{{if .Description}}<div class="muted">{{prose .Description}}</div>{{end}}</td>
<td>{{if .Params}}query:<ul class="fields">{{range .Params}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}{{if .BodyTypes}}body ({{.BodyTypes}}):<ul class="fields">{{range .Body}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}</td>
<td>{{range .Success}}<b>{{.}}</b> {{end}}{{range .Failure}}{{.}} {{end}}</td>
</tr>
{{end}}</table>
{{end}}
<h2 id="problems">Problem codes</h2>
<p>Errors are RFC 9457 problem details, <code>application/problem+json</code>:
<code>{"type", "title", "status", "detail", "code", "errors": {"field": "message"}}</code>.
Branch on <code>code</code>; its usual status is below, though a route may answer it with another where noted.</p>
<table>
<tr><th>code</th><th>status</th><th>meaning</th></tr>
{{range .Codes}}<tr id="problem-{{.Code}}"><td><code>{{.Code}}</code></td><td>{{.Status}}</td><td>{{inline .Meaning}}</td></tr>
{{end}}</table>
</body>
</html>
`))
