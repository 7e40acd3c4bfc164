package gateway

import (
	"net/http"

	"github.com/gorilla/mux"
)

// formRoutes also take HTML form posts (the pages' buttons), besides JSON.
var formRoutes = map[string]bool{
	"/v1/auth/verify-email/confirm":   true,
	"/v1/auth/password-reset/confirm": true,
}

// addRoutes is the whole API surface (API.md), on one screen.
func addRoutes(r *mux.Router, s *server) {
	todo := s.notImplemented()

	r.Handle("/v1/auth/register", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/login", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/refresh", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/logout", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/logout-all", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/verify-email/request", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/verify-email", todo).Methods(http.MethodGet)
	r.Handle("/v1/auth/verify-email/confirm", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/password-reset/request", todo).Methods(http.MethodPost)
	r.Handle("/v1/auth/password-reset", todo).Methods(http.MethodGet)
	r.Handle("/v1/auth/password-reset/confirm", todo).Methods(http.MethodPost)

	r.Handle("/v1/users/me", todo).Methods(http.MethodGet)
	r.Handle("/v1/users/me", todo).Methods(http.MethodPatch)
	r.Handle("/v1/users/me", todo).Methods(http.MethodDelete)
	r.Handle("/v1/users/me/password", todo).Methods(http.MethodPost)
	r.Handle("/v1/users/me/sessions", todo).Methods(http.MethodGet)
	r.Handle("/v1/users/me/sessions/{id}", todo).Methods(http.MethodDelete)

	r.Handle("/v1/admin/users", todo).Methods(http.MethodGet)
	r.Handle("/v1/admin/users/{id}", todo).Methods(http.MethodGet)
	r.Handle("/v1/admin/users/{id}", todo).Methods(http.MethodPatch)
	r.Handle("/v1/admin/users/{id}", todo).Methods(http.MethodDelete)
	r.Handle("/v1/admin/users/{id}/sessions", todo).Methods(http.MethodDelete)
	r.Handle("/v1/admin/emails", todo).Methods(http.MethodPost)

	r.Handle("/v1/system/ping", s.ping()).Methods(http.MethodGet)
	r.Handle("/healthz", s.healthz()).Methods(http.MethodGet)
	r.Handle("/readyz", s.readyz()).Methods(http.MethodGet)
	r.Handle("/.well-known/jwks.json", todo).Methods(http.MethodGet)
	r.Handle("/docs", todo).Methods(http.MethodGet)
	r.Handle("/docs/openapi.yaml", todo).Methods(http.MethodGet)
	r.Handle("/docs/asyncapi", todo).Methods(http.MethodGet)
	r.Handle("/docs/asyncapi.yaml", todo).Methods(http.MethodGet)
}
