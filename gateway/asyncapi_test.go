package gateway

import (
	"crypto/rand"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"go.yaml.in/yaml/v4"

	"github.com/usher-auth/usher/actors"
	"github.com/usher-auth/usher/internal/event"
)

func loadAsync(t *testing.T) *asyncAPI {
	t.Helper()
	doc, err := loadAsyncAPI(AsyncAPI())
	if err != nil {
		t.Fatalf("load asyncapi.yaml: %v", err)
	}
	return doc
}

// rawAsync is the document as plain YAML, before any $ref is followed.
func rawAsync(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(AsyncAPI(), &doc); err != nil {
		t.Fatalf("parse asyncapi.yaml: %v", err)
	}
	return doc
}

// eventMessages maps each message that carries an event to its type: the
// payload's `type` is a const.
func eventMessages(t *testing.T, doc *asyncAPI) map[string]asyncMessage {
	t.Helper()
	out := map[string]asyncMessage{}
	for _, k := range doc.Components.Messages.Keys {
		m := doc.Components.Messages.Vals[k]
		if m.Payload == nil {
			continue
		}
		typ := m.Payload.Properties.Vals["type"]
		if typ == nil || typ.Const.Kind != yaml.ScalarNode {
			continue
		}
		if typ.Const.Value != m.Name {
			t.Errorf("message %s: name %q, payload type const %q: want them equal", k, m.Name, typ.Const.Value)
		}
		out[typ.Const.Value] = m
	}
	return out
}

// channelAt finds the channel with this address.
func channelAt(doc *asyncAPI, addr string) (string, asyncChannel, bool) {
	for _, k := range doc.Channels.Keys {
		if ch := doc.Channels.Vals[k]; ch.Address != nil && *ch.Address == addr {
			return k, ch, true
		}
	}
	return "", asyncChannel{}, false
}

func messageNames(ms ordered[asyncMessage]) []string {
	var names []string
	for _, k := range ms.Keys {
		names = append(names, ms.Vals[k].Name)
	}
	slices.Sort(names)
	return names
}

func mailTypes() []string {
	var out []string
	for _, typ := range event.Types {
		if event.SendsMail(typ) {
			out = append(out, typ)
		}
	}
	slices.Sort(out)
	return out
}

func TestAsyncAPIDocument(t *testing.T) {
	raw := rawAsync(t)
	if v := raw["asyncapi"]; v != "3.0.0" {
		t.Fatalf("asyncapi: got %v, want 3.0.0", v)
	}
	for _, key := range []string{"info", "servers", "channels", "operations", "components"} {
		if _, ok := raw[key].(map[string]any); !ok {
			t.Errorf("asyncapi.yaml has no %s mapping", key)
		}
	}
	doc := loadAsync(t) // every $ref resolves, or this fails

	servers := map[string]struct{ protocol, port string }{
		"nats":     {"nats", ":4222"},
		"rabbitmq": {"amqp", ":5672"},
	}
	for name, want := range servers {
		sv, ok := doc.Servers.Vals[name]
		switch {
		case !ok:
			t.Errorf("no server %q", name)
		case sv.Protocol != want.protocol:
			t.Errorf("server %s: protocol %q, want %q", name, sv.Protocol, want.protocol)
		case !strings.HasSuffix(sv.Host, want.port):
			t.Errorf("server %s: host %q, want port %s", name, sv.Host, want.port)
		}
	}

	// Every name is in namespace usher, and the infrastructure is there.
	for _, k := range doc.Channels.Keys {
		ch := doc.Channels.Vals[k]
		if ch.Address != nil && !strings.HasPrefix(*ch.Address, "usher.") {
			t.Errorf("channel %s: address %q is not in namespace usher", k, *ch.Address)
		}
		if len(ch.Servers) != 1 {
			t.Errorf("channel %s: %d servers, want 1", k, len(ch.Servers))
		}
	}
	for _, addr := range []string{
		"usher.events.>", "usher.revocations", "usher.v1.{concern}.{op}",
		"usher.events", "usher.events.unrouted", "usher.mailer", "usher.events.dlx",
		"usher.mailer.dead", "usher.mailer.retry.{step}", "usher.mailer.lease-wait",
	} {
		if _, _, ok := channelAt(doc, addr); !ok {
			t.Errorf("no channel at %s", addr)
		}
	}

	// AMQP bindings name what the channel's address names.
	amqpKinds := map[string]string{
		"usher.events": "topic", "usher.events.dlx": "fanout",
		"usher.mailer": "queue", "usher.mailer.dead": "queue", "usher.events.unrouted": "queue",
		"usher.mailer.retry.{step}": "queue", "usher.mailer.lease-wait": "queue",
	}
	for addr, kind := range amqpKinds {
		_, ch, ok := channelAt(doc, addr)
		if !ok {
			continue
		}
		var b struct {
			AMQP struct {
				Is       string `yaml:"is"`
				Exchange struct{ Name, Type string }
				Queue    struct {
					Name    string
					Durable bool
				}
			} `yaml:"amqp"`
		}
		if err := ch.Bindings.Decode(&b); err != nil {
			t.Errorf("%s: bindings: %v", addr, err)
			continue
		}
		switch {
		case kind == "queue" && (b.AMQP.Is != "queue" || b.AMQP.Queue.Name != addr || !b.AMQP.Queue.Durable):
			t.Errorf("%s: amqp binding %+v, want a durable queue of that name", addr, b.AMQP)
		case kind != "queue" && (b.AMQP.Is != "routingKey" || b.AMQP.Exchange.Name != addr || b.AMQP.Exchange.Type != kind):
			t.Errorf("%s: amqp binding %+v, want a %s exchange of that name", addr, b.AMQP, kind)
		}
	}

	// Requests go to the queue group usher-nodes and are answered.
	handle, ok := doc.Operations.Vals["handleRequest"]
	if !ok {
		t.Fatal("no operation handleRequest")
	}
	var nb struct {
		NATS struct{ Queue string } `yaml:"nats"`
	}
	if err := handle.Bindings.Decode(&nb); err != nil || nb.NATS.Queue != "usher-nodes" {
		t.Errorf("handleRequest: nats queue %q (%v), want usher-nodes", nb.NATS.Queue, err)
	}
	if handle.Reply == nil || len(handle.Reply.Messages) != 1 || handle.Reply.Messages[0].Name != "reply" {
		t.Errorf("handleRequest: want a reply with the message reply")
	}

	// An operation's messages are its channel's.
	for _, k := range doc.Operations.Keys {
		op := doc.Operations.Vals[k]
		if op.Action != "send" && op.Action != "receive" {
			t.Errorf("operation %s: action %q", k, op.Action)
		}
		inChannel := messageNames(op.Channel.Messages)
		for _, m := range op.Messages {
			if !slices.Contains(inChannel, m.Name) {
				t.Errorf("operation %s: message %s is not on its channel", k, m.Name)
			}
		}
	}

	// Queues and exchanges carry the messages their bindings let in.
	all := slices.Sorted(slices.Values(event.Types))
	for addr, want := range map[string][]string{
		"usher.events.>": all, "usher.events": all, "usher.events.unrouted": all,
		"usher.mailer": mailTypes(), "usher.mailer.retry.{step}": mailTypes(),
		"usher.mailer.lease-wait": mailTypes(), "usher.events.dlx": mailTypes(), "usher.mailer.dead": mailTypes(),
	} {
		if _, ch, ok := channelAt(doc, addr); ok {
			if got := messageNames(ch.Messages); !slices.Equal(got, want) {
				t.Errorf("%s: messages %v, want %v", addr, got, want)
			}
		}
	}
}

// TestAsyncAPIEveryEventType holds asyncapi.yaml and event.Types together:
// a channel and a message for each type, and nothing more.
func TestAsyncAPIEveryEventType(t *testing.T) {
	doc := loadAsync(t)
	msgs := eventMessages(t, doc)
	for _, typ := range event.Types {
		if _, ok := msgs[typ]; !ok {
			t.Errorf("%s: no message in components.messages", typ)
		}
		key, ch, ok := channelAt(doc, "usher.events."+typ)
		if !ok {
			t.Errorf("%s: no channel at usher.events.%s", typ, typ)
			continue
		}
		if got := messageNames(ch.Messages); !slices.Equal(got, []string{typ}) {
			t.Errorf("%s: channel %s carries %v, want just %s", typ, key, got, typ)
		}
		sent := false
		for _, op := range doc.Operations.Vals {
			sent = sent || op.Action == "send" && op.Channel.Address != nil && *op.Channel.Address == *ch.Address
		}
		if !sent {
			t.Errorf("%s: no operation sends on channel %s", typ, key)
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(msgs)) {
		if !slices.Contains(event.Types, typ) {
			t.Errorf("message %s is in asyncapi.yaml but not in event.Types", typ)
		}
	}
	for _, k := range doc.Channels.Keys {
		addr := doc.Channels.Vals[k].Address
		if addr == nil {
			continue
		}
		if typ, ok := strings.CutPrefix(*addr, "usher.events."); ok && typ != ">" && typ != "unrouted" && typ != "dlx" && !slices.Contains(event.Types, typ) {
			t.Errorf("channel %s: %s is no event type in event.Types", k, typ)
		}
	}
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" {
			if name == "" {
				name = f.Name
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestAsyncAPIMatchesGoTypes holds the schemas to the structs that put
// messages on the wire: a field added in Go must be documented here.
func TestAsyncAPIMatchesGoTypes(t *testing.T) {
	doc := loadAsync(t)
	schema := func(s *asyncSchema, path ...string) *asyncSchema {
		for _, p := range path {
			if s == nil {
				return nil
			}
			s = s.Properties.Vals[p]
		}
		return s
	}
	msg := func(key string) *asyncSchema {
		if m, ok := doc.Components.Messages.Vals[key]; ok {
			return m.Payload
		}
		return nil
	}
	type goCase struct {
		what   string
		schema *asyncSchema
		typ    reflect.Type
		skip   []string // Go fields that are no part of the contract
	}
	cases := []goCase{
		{"SealedMail", doc.Components.Schemas.Vals["SealedMail"], reflect.TypeFor[event.Mail](), nil},
		{"request", msg("request"), reflect.TypeFor[actors.Request](), []string{"testhook"}},
		{"request claims", schema(msg("request"), "claims"), reflect.TypeFor[actors.Claims](), nil},
		{"request client", schema(msg("request"), "client"), reflect.TypeFor[actors.Client](), nil},
		{"reply", msg("reply"), reflect.TypeFor[actors.Reply](), nil},
	}
	for typ, m := range eventMessages(t, doc) {
		cases = append(cases, goCase{typ, m.Payload, reflect.TypeFor[event.Envelope](), nil})
		if event.SendsMail(typ) {
			cases = append(cases,
				goCase{typ + " data", schema(m.Payload, "data"), reflect.TypeFor[event.Data](), nil},
				goCase{typ + " data.sealed", schema(m.Payload, "data", "sealed"), reflect.TypeFor[event.Sealed](), nil})
		} else if d := schema(m.Payload, "data"); d == nil || len(d.Properties.Keys) > 0 {
			t.Errorf("%s: data must be an empty object", typ)
		}
	}
	for _, c := range cases {
		if c.schema == nil {
			t.Errorf("%s: no schema", c.what)
			continue
		}
		want := slices.DeleteFunc(jsonFields(c.typ), func(f string) bool { return slices.Contains(c.skip, f) })
		got := slices.Sorted(slices.Values(c.schema.Properties.Keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: schema has fields %v, %s has %v", c.what, got, c.typ, want)
		}
	}
}

// payloadSchema is a message's payload as an openapi3.Schema, by way of
// JSON.
func payloadSchema(t *testing.T, m asyncMessage) *openapi3.Schema {
	t.Helper()
	var v any
	if err := m.Payload.node.Decode(&v); err != nil {
		t.Fatalf("%s: decode payload schema: %v", m.Name, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: payload schema as JSON: %v", m.Name, err)
	}
	var s openapi3.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: payload schema as openapi3.Schema: %v", m.Name, err)
	}
	return &s
}

// validate checks a value against s as JSON Schema. The 2020-12 validator,
// because the built-in one (OpenAPI 3.0) ignores const.
func validate(s *openapi3.Schema, v any) error {
	return s.VisitJSON(v, openapi3.EnableJSONSchema2020())
}

// realEvent builds an event of type typ the way the nodes do (actors'
// newEvent and mailEvent, and for a reset the outbox insert that fills in
// the user id), as JSON values after a trip over the wire.
func realEvent(t *testing.T, sealer *event.Sealer, typ string) map[string]any {
	t.Helper()
	userID := uuid.NewString()
	if typ == event.ResetRequested || typ == event.EmailRequested {
		userID = "" // the node does not know the account
	}
	e := event.Envelope{ID: uuid.NewString(), Type: typ, OccurredAt: time.Now().UTC(), UserID: userID}
	if event.SendsMail(typ) {
		m := event.Mail{To: "someone@example.com", Purpose: typ, UserID: userID}
		switch typ {
		case event.UserRegistered, event.VerificationRequested, event.ResetRequested:
			m.Token = "tok_" + uuid.NewString()
		case event.EmailRequested:
			m.Subject, m.Text = "Hello", "A word from the admins."
		}
		if err := sealer.Seal(&e, m); err != nil {
			t.Fatalf("%s: seal: %v", typ, err)
		}
	}
	if typ == event.ResetRequested {
		e.UserID = uuid.NewString() // store.RequestReset fills it in
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("%s: marshal: %v", typ, err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: unmarshal: %v", typ, err)
	}
	return v
}

func newTestSealer(t *testing.T) *event.Sealer {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	s, err := event.NewSealer(key)
	if err != nil {
		t.Fatalf("sealer: %v", err)
	}
	return s
}

func TestAsyncAPIPayloadsValidateRealEvents(t *testing.T) {
	doc := loadAsync(t)
	msgs := eventMessages(t, doc)
	sealer := newTestSealer(t)
	for _, typ := range event.Types {
		t.Run(typ, func(t *testing.T) {
			m, ok := msgs[typ]
			if !ok {
				t.Fatalf("no message for %s", typ)
			}
			schema := payloadSchema(t, m)
			ev := realEvent(t, sealer, typ)
			if err := validate(schema, ev); err != nil {
				t.Fatalf("a real %s event does not match its schema: %v\nevent: %v", typ, err, ev)
			}
			sealed, _ := ev["data"].(map[string]any)["sealed"].(map[string]any)
			if event.SendsMail(typ) != (sealed != nil) {
				t.Fatalf("data: %v; SendsMail(%s) = %v", ev["data"], typ, event.SendsMail(typ))
			}
		})
	}
}

func TestAsyncAPIPayloadsRejectWrongEvents(t *testing.T) {
	doc := loadAsync(t)
	msgs := eventMessages(t, doc)
	sealer := newTestSealer(t)
	type mutation struct {
		name   string
		change func(ev map[string]any)
	}
	for _, typ := range event.Types {
		muts := []mutation{
			{"another type", func(ev map[string]any) {
				other := event.Types[(slices.Index(event.Types, typ)+1)%len(event.Types)]
				ev["type"] = other
			}},
			{"no id", func(ev map[string]any) { delete(ev, "id") }},
			{"an id that is no uuid", func(ev map[string]any) { ev["id"] = "e1" }},
			{"a time that is no date-time", func(ev map[string]any) { ev["occurred_at"] = "yesterday" }},
			{"a field more", func(ev map[string]any) { ev["to"] = "someone@example.com" }},
		}
		if event.SendsMail(typ) {
			muts = append(muts,
				mutation{"no data.sealed", func(ev map[string]any) { ev["data"] = map[string]any{} }},
				mutation{"the recipient in clear", func(ev map[string]any) {
					ev["data"].(map[string]any)["to"] = "someone@example.com"
				}},
				mutation{"a short nonce", func(ev map[string]any) {
					ev["data"].(map[string]any)["sealed"].(map[string]any)["nonce"] = "AAAA"
				}},
				mutation{"no kid", func(ev map[string]any) {
					delete(ev["data"].(map[string]any)["sealed"].(map[string]any), "kid")
				}},
			)
		} else {
			muts = append(muts,
				mutation{"a seal", func(ev map[string]any) {
					ev["data"] = map[string]any{"sealed": map[string]any{"kid": "k", "nonce": strings.Repeat("A", 32), "box": strings.Repeat("A", 24)}}
				}},
				mutation{"no user_id", func(ev map[string]any) { delete(ev, "user_id") }},
			)
		}
		schema := payloadSchema(t, msgs[typ])
		for _, mut := range muts {
			ev := realEvent(t, sealer, typ)
			mut.change(ev)
			if err := validate(schema, ev); err == nil {
				t.Errorf("%s with %s: the schema accepts it, want a failure", typ, mut.name)
			}
		}
	}
}

// served runs h for a GET of path.
func served(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200: %s", path, w.Code, w.Body)
	}
	return w
}

// farAway finds a URL that would load or link something from elsewhere.
var farAway = regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?\s*(https?:|//)|url\(|@import|<script|<iframe|<object|<embed|<link`)

func TestAsyncAPIPage(t *testing.T) {
	s := &server{}
	w := served(t, s.docsPage(asyncHTML), "/docs/asyncapi")
	docs := served(t, s.docsPage(docsHTML), "/docs")
	for _, k := range []string{"Content-Type", "Referrer-Policy", "Cache-Control", "Content-Security-Policy", "X-Content-Type-Options"} {
		if got, want := w.Header().Get(k), docs.Header().Get(k); got != want || got == "" {
			t.Errorf("%s: got %q, want %q (as /docs)", k, got, want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q is not strict", csp)
	}

	body := w.Body.String()
	doc := loadAsync(t)
	for _, k := range doc.Channels.Keys {
		ch := doc.Channels.Vals[k]
		if ch.Address == nil {
			continue
		}
		if !strings.Contains(body, `<span class="addr">`+htmlText(*ch.Address)+`</span>`) {
			t.Errorf("page lacks channel %s", *ch.Address)
		}
	}
	for _, k := range doc.Components.Messages.Keys {
		if name := doc.Components.Messages.Vals[k].Name; !strings.Contains(body, `id="message-`+name+`"`) {
			t.Errorf("page lacks message %s", name)
		}
	}
	for _, k := range doc.Operations.Keys {
		if !strings.Contains(body, `id="operation-`+k+`"`) {
			t.Errorf("page lacks operation %s", k)
		}
	}
	for _, s := range []string{
		`href="/docs/asyncapi.yaml"`, `href="/docs"`, "nats://127.0.0.1:4222", "amqp://127.0.0.1:5672",
		"USHER_NAMESPACE", "USHER_EVENTS", "usher-nodes", "usher-bridge",
		"<code>data.sealed.nonce*</code>", "<code>data.sealed.box*</code>", "<code>data.sealed.kid*</code>",
		"<code>user_id*</code>", "<code>user_id</code>", "always <code>user.registered</code>",
		"<code>budget_ms*</code>", "<code>retry_after</code>", "<code>Nats-Msg-Id</code>",
		`id="sealed-mail"`, "<code>token</code>", "<code>subject</code>",
	} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	if m := farAway.FindString(body); m != "" {
		t.Errorf("page loads or links something from elsewhere: %q", m)
	}
}

// htmlText is how html/template writes text: & < > ' " escaped.
func htmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&#39;", `"`, "&#34;").Replace(s)
}

func TestAsyncAPISpecIsServedAsYAML(t *testing.T) {
	s := &server{}
	w := served(t, s.document(asyncSpec), "/docs/asyncapi.yaml")
	oa := served(t, s.document(spec), "/docs/openapi.yaml")
	for _, k := range []string{"Content-Type", "X-Content-Type-Options", "Cache-Control"} {
		if got, want := w.Header().Get(k), oa.Header().Get(k); got != want || got == "" {
			t.Errorf("%s: got %q, want %q (as /docs/openapi.yaml)", k, got, want)
		}
	}
	if w.Body.String() != string(AsyncAPI()) {
		t.Errorf("body is not asyncapi.yaml")
	}
}
