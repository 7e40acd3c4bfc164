package gateway

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/mux"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	return doc
}

func TestOpenAPISpecIsValid(t *testing.T) {
	doc := loadSpec(t)
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi: got %q, want 3.0.3", doc.OpenAPI)
	}
}

// TestOpenAPISpecMatchesRouter holds routes.go and openapi.yaml together:
// the same (method, path) pairs, with the same {params}.
func TestOpenAPISpecMatchesRouter(t *testing.T) {
	r := mux.NewRouter()
	addRoutes(r, &server{})
	served := map[string]bool{}
	r.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := rt.GetPathTemplate()
		if err != nil {
			t.Errorf("route without a path template: %v", err)
			return nil
		}
		methods, err := rt.GetMethods()
		if err != nil {
			t.Errorf("%s: route without methods: %v", tpl, err)
			return nil
		}
		for _, m := range methods {
			served[m+" "+tpl] = true
		}
		return nil
	})
	documented := map[string]bool{}
	for path, item := range loadSpec(t).Paths.Map() {
		for m := range item.Operations() {
			documented[m+" "+path] = true
		}
	}
	if len(served) < 30 {
		t.Fatalf("walked %d routes, want the whole API", len(served))
	}
	for _, rt := range slices.Sorted(maps.Keys(served)) {
		if !documented[rt] {
			t.Errorf("%s is served (routes.go) but not in openapi.yaml", rt)
		}
	}
	for _, rt := range slices.Sorted(maps.Keys(documented)) {
		if !served[rt] {
			t.Errorf("%s is in openapi.yaml but not served (routes.go)", rt)
		}
	}
}

// TestOpenAPISpecProblemCodes keeps the spec's code enum and problem.go's
// codes the same set.
func TestOpenAPISpecProblemCodes(t *testing.T) {
	code := loadSpec(t).Components.Schemas["Problem"].Value.Properties["code"].Value
	inSpec := map[string]bool{}
	for _, c := range code.Enum {
		inSpec[c.(string)] = true
	}
	for _, c := range slices.Sorted(maps.Keys(statusOf)) {
		if !inSpec[c] {
			t.Errorf("code %q is in problem.go but not in the Problem schema", c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(inSpec)) {
		if _, ok := statusOf[c]; !ok {
			t.Errorf("code %q is in the Problem schema but not in problem.go", c)
		}
	}
	if d, _ := code.Extensions["x-enum-descriptions"].([]any); len(d) != len(code.Enum) {
		t.Errorf("x-enum-descriptions has %d entries, want one per code (%d)", len(d), len(code.Enum))
	}
}

func TestDocsPage(t *testing.T) {
	w := httptest.NewRecorder()
	(&server{}).docsPage(docsHTML).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/docs", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("got %d, want 200: %s", w.Code, w.Body)
	}
	want := map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	body := w.Body.String()
	for _, s := range []string{
		`href="/docs/openapi.yaml"`, `href="/docs/asyncapi"`,
		"/v1/auth/login", "/v1/admin/users/{id}/sessions", "/.well-known/jwks.json",
		`id="problem-validation_failed"`, `id="problem-not_implemented"`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("docs page lacks %s", s)
		}
	}
	// Nothing from elsewhere: no scripts, no absolute URLs in src or href.
	for _, s := range []string{"<script", `src="http`, `href="http`, `href="//`, `src="//`} {
		if strings.Contains(body, s) {
			t.Errorf("docs page contains %s", s)
		}
	}
}

func TestDocsPageListsEveryOperation(t *testing.T) {
	w := httptest.NewRecorder()
	(&server{}).docsPage(docsHTML).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/docs", nil))
	body := w.Body.String()
	for path, item := range loadSpec(t).Paths.Map() {
		for m := range item.Operations() {
			row := `<span class="method ` + strings.ToLower(m) + `">` + m + `</span> <span class="path">` + path + `</span>`
			if !strings.Contains(body, row) {
				t.Errorf("docs page lacks %s %s", m, path)
			}
		}
	}
}

func TestOpenAPISpecIsServedAsYAML(t *testing.T) {
	w := httptest.NewRecorder()
	(&server{}).document(spec).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/docs/openapi.yaml", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("got %d, want 200", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type: got %q, want application/yaml", ct)
	}
	if w.Body.String() != string(OpenAPI()) {
		t.Errorf("served document differs from the embedded one")
	}
}
