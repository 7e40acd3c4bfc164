package gateway

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v4"
)

// asyncSpec is the AsyncAPI document of usher's messaging: the domain
// events, the requests to nodes and the revocations. It changes together
// with DESIGN.md ("Messaging"), API.md ("Domain events") and internal/event
// (asyncapi_test.go holds them together).
//
//go:embed asyncapi.yaml
var asyncSpec []byte

// AsyncAPI returns the AsyncAPI document the gateway serves.
func AsyncAPI() []byte { return bytes.Clone(asyncSpec) }

// asyncHTML renders the page once, from the embedded document.
var asyncHTML = sync.OnceValues(func() ([]byte, error) {
	doc, err := loadAsyncAPI(asyncSpec)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := asyncTemplate.Execute(&buf, asyncView(doc)); err != nil {
		return nil, fmt.Errorf("render asyncapi docs: %w", err)
	}
	return buf.Bytes(), nil
})

// asyncAPI is the part of an AsyncAPI 3 document the page shows, read after
// every $ref was replaced by what it points to.
type asyncAPI struct {
	AsyncAPI string `yaml:"asyncapi"`
	Info     struct {
		Title       string `yaml:"title"`
		Version     string `yaml:"version"`
		Description string `yaml:"description"`
	} `yaml:"info"`
	Servers    ordered[asyncServer]    `yaml:"servers"`
	Channels   ordered[asyncChannel]   `yaml:"channels"`
	Operations ordered[asyncOperation] `yaml:"operations"`
	Components struct {
		Messages ordered[asyncMessage] `yaml:"messages"`
		Schemas  ordered[*asyncSchema] `yaml:"schemas"`
	} `yaml:"components"`
}

type asyncServer struct {
	Host            string `yaml:"host"`
	Protocol        string `yaml:"protocol"`
	ProtocolVersion string `yaml:"protocolVersion"`
	Pathname        string `yaml:"pathname"`
	Title           string `yaml:"title"`
	Description     string `yaml:"description"`
}

type asyncChannel struct {
	// Address is nil for a channel known only at run time (a reply inbox).
	Address     *string                 `yaml:"address"`
	Title       string                  `yaml:"title"`
	Description string                  `yaml:"description"`
	Servers     []asyncServer           `yaml:"servers"`
	Parameters  ordered[asyncParameter] `yaml:"parameters"`
	Messages    ordered[asyncMessage]   `yaml:"messages"`
	Bindings    yaml.Node               `yaml:"bindings"`
}

type asyncParameter struct {
	Description string   `yaml:"description"`
	Enum        []string `yaml:"enum"`
	Examples    []string `yaml:"examples"`
}

type asyncOperation struct {
	Action      string         `yaml:"action"`
	Title       string         `yaml:"title"`
	Description string         `yaml:"description"`
	Channel     asyncChannel   `yaml:"channel"`
	Messages    []asyncMessage `yaml:"messages"`
	Reply       *struct {
		Channel  *asyncChannel  `yaml:"channel"`
		Messages []asyncMessage `yaml:"messages"`
	} `yaml:"reply"`
	Bindings yaml.Node `yaml:"bindings"`
}

type asyncMessage struct {
	Name        string       `yaml:"name"`
	Title       string       `yaml:"title"`
	Summary     string       `yaml:"summary"`
	Description string       `yaml:"description"`
	ContentType string       `yaml:"contentType"`
	Headers     *asyncSchema `yaml:"headers"`
	Payload     *asyncSchema `yaml:"payload"`
}

// asyncSchema is a JSON Schema as far as the page describes it; node keeps
// all of it, for validators. Its yaml.Node fields are not pointers: yaml/v4
// cannot decode a scalar into a *yaml.Node. Kind 0 means absent.
type asyncSchema struct {
	node yaml.Node

	Type                 string                `yaml:"type"`
	Format               string                `yaml:"format"`
	ContentEncoding      string                `yaml:"contentEncoding"`
	Description          string                `yaml:"description"`
	Const                yaml.Node             `yaml:"const"`
	Enum                 []string              `yaml:"enum"`
	Pattern              string                `yaml:"pattern"`
	MinLength            *int                  `yaml:"minLength"`
	MaxLength            *int                  `yaml:"maxLength"`
	Minimum              *float64              `yaml:"minimum"`
	Required             []string              `yaml:"required"`
	Properties           ordered[*asyncSchema] `yaml:"properties"`
	AdditionalProperties yaml.Node             `yaml:"additionalProperties"`
}

func (s *asyncSchema) UnmarshalYAML(n *yaml.Node) error {
	type fields asyncSchema // without this method
	if err := n.Decode((*fields)(s)); err != nil {
		return err
	}
	s.node = *n
	return nil
}

// ordered is a YAML mapping that keeps the order of its keys: the page
// lists things in the order the document does.
type ordered[T any] struct {
	Keys []string
	Vals map[string]T
}

func (o *ordered[T]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping", n.Line)
	}
	o.Vals = make(map[string]T, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		var v T
		if err := n.Content[i+1].Decode(&v); err != nil {
			return err
		}
		k := n.Content[i].Value
		o.Keys = append(o.Keys, k)
		o.Vals[k] = v
	}
	return nil
}

// loadAsyncAPI parses an AsyncAPI document and resolves its local $refs.
func loadAsyncAPI(data []byte) (*asyncAPI, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse asyncapi.yaml: %w", err)
	}
	resolved, err := inlineRefs(&root, &root, 0)
	if err != nil {
		return nil, fmt.Errorf("resolve asyncapi.yaml: %w", err)
	}
	var doc asyncAPI
	if err := resolved.Decode(&doc); err != nil {
		return nil, fmt.Errorf("read asyncapi.yaml: %w", err)
	}
	return &doc, nil
}

// maxRefDepth bounds inlining, so a $ref cycle is an error, not a hang.
const maxRefDepth = 64

// inlineRefs returns a copy of n in which every {$ref: "#/…"} is replaced
// by (a copy of) its target in root.
func inlineRefs(root, n *yaml.Node, depth int) (*yaml.Node, error) {
	if depth > maxRefDepth {
		return nil, errors.New("$refs nest too deep (a cycle?)")
	}
	switch n.Kind {
	case yaml.AliasNode:
		return inlineRefs(root, n.Alias, depth+1)
	case yaml.DocumentNode, yaml.SequenceNode, yaml.MappingNode:
	default:
		return n, nil
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "$ref" {
				target, err := lookupRef(root, n.Content[i+1].Value)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", n.Content[i+1].Line, err)
				}
				return inlineRefs(root, target, depth+1)
			}
		}
	}
	out := *n
	out.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		ic, err := inlineRefs(root, c, depth+1)
		if err != nil {
			return nil, err
		}
		out.Content[i] = ic
	}
	return &out, nil
}

// lookupRef follows a local JSON pointer ("#/components/messages/x").
func lookupRef(root *yaml.Node, ref string) (*yaml.Node, error) {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only local references are supported", ref)
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, tok := range strings.Split(path, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return nil, fmt.Errorf("$ref %q: %q not found", ref, tok)
		}
		n = next
	}
	return n, nil
}

type asyncData struct {
	Title, Version, Description string
	Servers                     []asyncServerView
	Channels                    []asyncChannelView
	Operations                  []asyncOpView
	Messages                    []asyncMessageView
	Seal                        *asyncSchemaView
}

type asyncServerView struct {
	Key, Title, URL, Description string
}

type asyncChannelView struct {
	Key, Address, Title, Description string
	Servers, Params, Bindings        []string
	Messages                         []string
}

type asyncOpView struct {
	Key, Action, Title, Description string
	Channel                         string
	Messages                        []string
	Reply                           string
	ReplyMessages                   []string
	Bindings                        []string
}

type asyncMessageView struct {
	Name, Title, Summary, Description, ContentType string
	Headers                                        []asyncField
	Payload                                        asyncSchemaView
}

type asyncSchemaView struct {
	Name, Description string
	// Fields lists an object's fields, nested ones as a.b; Type describes
	// any other value.
	Fields []asyncField
	Type   string
}

// asyncField is one row of a payload table.
type asyncField struct {
	Name, Type, Description string
	Required                bool
	Rules                   []string
}

func asyncView(doc *asyncAPI) asyncData {
	d := asyncData{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	for _, k := range doc.Servers.Keys {
		sv := doc.Servers.Vals[k]
		d.Servers = append(d.Servers, asyncServerView{Key: k, Title: sv.Title, URL: serverURL(sv), Description: sv.Description})
	}
	for _, k := range doc.Channels.Keys {
		ch := doc.Channels.Vals[k]
		v := asyncChannelView{Key: k, Address: address(ch), Title: ch.Title, Description: ch.Description, Bindings: bindingLines(&ch.Bindings)}
		for _, sv := range ch.Servers {
			v.Servers = append(v.Servers, sv.Title)
		}
		for _, p := range ch.Parameters.Keys {
			v.Params = append(v.Params, paramLine(p, ch.Parameters.Vals[p]))
		}
		for _, m := range ch.Messages.Keys {
			v.Messages = append(v.Messages, ch.Messages.Vals[m].Name)
		}
		d.Channels = append(d.Channels, v)
	}
	for _, k := range doc.Operations.Keys {
		op := doc.Operations.Vals[k]
		v := asyncOpView{Key: k, Action: op.Action, Title: op.Title, Description: op.Description,
			Channel: address(op.Channel), Bindings: bindingLines(&op.Bindings)}
		for _, m := range op.Messages {
			v.Messages = append(v.Messages, m.Name)
		}
		if r := op.Reply; r != nil {
			if r.Channel != nil {
				v.Reply = address(*r.Channel)
			}
			for _, m := range r.Messages {
				v.ReplyMessages = append(v.ReplyMessages, m.Name)
			}
		}
		d.Operations = append(d.Operations, v)
	}
	for _, k := range doc.Components.Messages.Keys {
		m := doc.Components.Messages.Vals[k]
		v := asyncMessageView{Name: m.Name, Title: m.Title, Summary: m.Summary, Description: m.Description, ContentType: m.ContentType}
		if m.Headers != nil {
			v.Headers = schemaFields("", m.Headers)
		}
		if m.Payload != nil {
			v.Payload = schemaView("", m.Payload)
		}
		d.Messages = append(d.Messages, v)
	}
	if s := doc.Components.Schemas.Vals["SealedMail"]; s != nil {
		v := schemaView("SealedMail", s)
		d.Seal = &v
	}
	return d
}

func serverURL(s asyncServer) string {
	return s.Protocol + "://" + s.Host + s.Pathname
}

func address(ch asyncChannel) string {
	if ch.Address == nil {
		return "(" + ch.Title + ": known at run time)"
	}
	return *ch.Address
}

func paramLine(name string, p asyncParameter) string {
	out := "{" + name + "}: " + p.Description
	switch {
	case len(p.Enum) > 0:
		out += " One of " + strings.Join(p.Enum, ", ") + "."
	case len(p.Examples) > 0:
		out += " For example " + strings.Join(p.Examples, ", ") + "."
	}
	return out
}

// bindingLines flattens protocol bindings to "amqp.exchange.type: topic",
// leaving out their bindingVersion.
func bindingLines(n *yaml.Node) []string {
	var out []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := n.Content[i].Value; k != "bindingVersion" {
					walk(prefix+k+".", n.Content[i+1])
				}
			}
		case yaml.SequenceNode:
			var vals []string
			for _, c := range n.Content {
				vals = append(vals, c.Value)
			}
			out = append(out, strings.TrimSuffix(prefix, ".")+": "+strings.Join(vals, ", "))
		case yaml.ScalarNode:
			out = append(out, strings.TrimSuffix(prefix, ".")+": "+n.Value)
		}
	}
	walk("", n)
	return out
}

func schemaView(name string, s *asyncSchema) asyncSchemaView {
	v := asyncSchemaView{Name: name, Description: s.Description}
	if s.Type == "object" && len(s.Properties.Keys) > 0 {
		v.Fields = schemaFields("", s)
	} else {
		v.Type = typeOf(s)
	}
	return v
}

// schemaFields lists an object's properties in document order, the
// properties of nested objects right after their parent.
func schemaFields(prefix string, s *asyncSchema) []asyncField {
	var out []asyncField
	for _, name := range s.Properties.Keys {
		p := s.Properties.Vals[name]
		if p == nil {
			continue
		}
		out = append(out, asyncField{
			Name:        prefix + name,
			Required:    slices.Contains(s.Required, name),
			Type:        typeOf(p),
			Rules:       rulesOf(p),
			Description: p.Description,
		})
		out = append(out, schemaFields(prefix+name+".", p)...)
	}
	return out
}

func typeOf(s *asyncSchema) string {
	t := s.Type
	if t == "" {
		t = "any JSON value"
	}
	if ap := s.AdditionalProperties; t == "object" && ap.Kind == yaml.MappingNode {
		var item asyncSchema
		if ap.Decode(&item) == nil && item.Type != "" {
			t = "object of " + item.Type
		}
	}
	switch {
	case s.Format != "":
		t += " (" + s.Format + ")"
	case s.ContentEncoding != "":
		t += " (" + s.ContentEncoding + ")"
	}
	return t
}

func rulesOf(s *asyncSchema) []string {
	var out []string
	if s.Const.Kind == yaml.ScalarNode {
		out = append(out, "always `"+s.Const.Value+"`")
	}
	if len(s.Enum) > 0 {
		out = append(out, "one of "+strings.Join(s.Enum, ", "))
	}
	switch {
	case s.MinLength != nil && s.MaxLength != nil && *s.MinLength == *s.MaxLength:
		out = append(out, fmt.Sprintf("%d chars", *s.MinLength))
	case s.MinLength != nil && s.MaxLength != nil:
		out = append(out, fmt.Sprintf("%d–%d chars", *s.MinLength, *s.MaxLength))
	case s.MaxLength != nil:
		out = append(out, fmt.Sprintf("≤ %d chars", *s.MaxLength))
	case s.MinLength != nil && *s.MinLength > 1:
		out = append(out, fmt.Sprintf("≥ %d chars", *s.MinLength))
	case s.MinLength != nil && *s.MinLength == 1:
		out = append(out, "not empty")
	}
	if s.Minimum != nil {
		out = append(out, fmt.Sprintf("≥ %g", *s.Minimum))
	}
	// A format or an encoding says what a pattern spells out.
	if s.Pattern != "" && s.Format == "" && s.ContentEncoding == "" {
		out = append(out, "matches `"+s.Pattern+"`")
	}
	if ap := s.AdditionalProperties; s.Type == "object" && ap.Kind == yaml.ScalarNode && ap.Value == "false" {
		if len(s.Properties.Keys) == 0 {
			out = append(out, "always `{}`")
		} else {
			out = append(out, "no other fields")
		}
	}
	return out
}

var asyncTemplate = template.Must(template.New("asyncapi").Funcs(template.FuncMap{
	"prose":  prose,
	"inline": inline,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}} messaging</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
code, .addr { font-family: ui-monospace, monospace; font-size: 0.92em; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
th, td { text-align: left; vertical-align: top; padding: 0.4rem 0.6rem; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
td p { margin: 0 0 0.4rem; }
.action { font-weight: 600; font-family: ui-monospace, monospace; }
.send { color: #8a4b00; } .receive { color: #0b6e3a; }
.muted { color: #555; font-size: 0.9em; }
ul.fields { margin: 0; padding-left: 1.1rem; }
h3 { margin-bottom: 0.2rem; }
</style>
</head>
<body>
<h1>{{.Title}} messaging <span class="muted">v{{.Version}}</span></h1>
{{prose .Description}}
<p>Machine-readable: <a href="/docs/asyncapi.yaml">/docs/asyncapi.yaml</a> (AsyncAPI 3.0).
The REST API: <a href="/docs">/docs</a>.</p>

<h2 id="servers">Servers</h2>
<table>
<tr><th>Server</th><th>URL</th><th>Notes</th></tr>
{{range .Servers}}<tr id="server-{{.Key}}"><td>{{.Title}}</td><td><code>{{.URL}}</code></td><td>{{with .Description}}{{prose .}}{{end}}</td></tr>
{{end}}</table>

<h2 id="channels">Channels</h2>
<table>
<tr><th>Address</th><th>Server</th><th>What it is</th><th>Messages</th></tr>
{{range .Channels}}<tr id="channel-{{.Key}}">
<td><span class="addr">{{.Address}}</span></td>
<td>{{range .Servers}}{{.}} {{end}}</td>
<td><b>{{.Title}}</b>{{if .Description}}<div>{{prose .Description}}</div>{{end}}{{if .Params}}<div class="muted">parameters:<ul class="fields">{{range .Params}}<li>{{inline .}}</li>{{end}}</ul></div>{{end}}{{if .Bindings}}<div class="muted">bindings:<ul class="fields">{{range .Bindings}}<li><code>{{.}}</code></li>{{end}}</ul></div>{{end}}</td>
<td>{{range .Messages}}<a href="#message-{{.}}"><code>{{.}}</code></a><br>{{end}}</td>
</tr>
{{end}}</table>

<h2 id="operations">Operations</h2>
<table>
<tr><th>Action</th><th>Channel</th><th>Who and why</th><th>Messages</th></tr>
{{range .Operations}}<tr id="operation-{{.Key}}">
<td><span class="action {{.Action}}">{{.Action}}</span></td>
<td><span class="addr">{{.Channel}}</span>{{if .Reply}}<div class="muted">reply on {{.Reply}}</div>{{end}}</td>
<td><b>{{.Title}}</b>{{if .Description}}<div>{{prose .Description}}</div>{{end}}{{if .Bindings}}<div class="muted">bindings:<ul class="fields">{{range .Bindings}}<li><code>{{.}}</code></li>{{end}}</ul></div>{{end}}</td>
<td>{{range .Messages}}<a href="#message-{{.}}"><code>{{.}}</code></a><br>{{end}}{{if .ReplyMessages}}reply: {{range .ReplyMessages}}<a href="#message-{{.}}"><code>{{.}}</code></a> {{end}}{{end}}</td>
</tr>
{{end}}</table>

<h2 id="messages">Messages</h2>
<p class="muted">In the tables, * marks a required field.</p>
{{range .Messages}}
<h3 id="message-{{.Name}}"><code>{{.Name}}</code> — {{.Title}}</h3>
<p>{{inline .Summary}} <span class="muted">({{.ContentType}})</span></p>
{{if .Description}}{{prose .Description}}{{end}}
{{if .Headers}}<table>
<tr><th>Header</th><th>Type</th><th>Meaning</th></tr>
{{range .Headers}}<tr><td><code>{{.Name}}</code></td><td>{{.Type}}</td><td>{{with .Description}}{{prose .}}{{end}}</td></tr>
{{end}}</table>{{end}}
{{template "schema" .Payload}}
{{end}}

{{with .Seal}}<h2 id="sealed-mail">What a seal contains</h2>
{{with .Description}}{{prose .}}{{end}}
{{template "schema" .}}{{end}}
</body>
</html>
{{define "schema"}}{{if .Fields}}<table>
<tr><th>Field</th><th>Type</th><th>Rules</th><th>Meaning</th></tr>
{{range .Fields}}<tr><td><code>{{.Name}}{{if .Required}}*{{end}}</code></td><td>{{.Type}}</td><td>{{range .Rules}}{{inline .}}<br>{{end}}</td><td>{{with .Description}}{{prose .}}{{end}}</td></tr>
{{end}}</table>{{else}}<p>Payload: {{.Type}}.{{if .Description}} {{inline .Description}}{{end}}</p>{{end}}{{end}}
`))
