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
	r.Handle("/v1/auth/register", s.register()).Methods(http.MethodPost)
	r.Handle("/v1/auth/login", s.login()).Methods(http.MethodPost)
	r.Handle("/v1/auth/refresh", s.withRefreshToken("session.refresh", http.StatusOK)).Methods(http.MethodPost)
	r.Handle("/v1/auth/logout", s.withRefreshToken("session.logout", http.StatusNoContent)).Methods(http.MethodPost)
	r.Handle("/v1/auth/logout-all", s.claimsOnly("session.logout_all", http.StatusNoContent, false)).Methods(http.MethodPost)
	r.Handle("/v1/auth/verify-email/request", s.claimsOnly("token.verify_request", http.StatusAccepted, false)).Methods(http.MethodPost)
	r.Handle("/v1/auth/verify-email", s.tokenPage("verify.html", "Verify your email")).Methods(http.MethodGet)
	r.Handle("/v1/auth/verify-email/confirm", s.confirmVerification()).Methods(http.MethodPost)
	r.Handle("/v1/auth/password-reset/request", s.requestReset()).Methods(http.MethodPost)
	r.Handle("/v1/auth/password-reset", s.tokenPage("reset.html", "Choose a new password")).Methods(http.MethodGet)
	r.Handle("/v1/auth/password-reset/confirm", s.confirmReset()).Methods(http.MethodPost)

	r.Handle("/v1/users/me", s.claimsOnly("user.me", http.StatusOK, false)).Methods(http.MethodGet)
	r.Handle("/v1/users/me", s.updateMe()).Methods(http.MethodPatch)
	r.Handle("/v1/users/me", s.deleteMe()).Methods(http.MethodDelete)
	r.Handle("/v1/users/me/password", s.changePassword()).Methods(http.MethodPost)
	r.Handle("/v1/users/me/sessions", s.claimsOnly("session.list", http.StatusOK, false)).Methods(http.MethodGet)
	r.Handle("/v1/users/me/sessions/{id}", s.endMySession()).Methods(http.MethodDelete)

	r.Handle("/v1/admin/users", s.listUsers()).Methods(http.MethodGet)
	r.Handle("/v1/admin/users/{id}", s.byID("user.get", http.StatusOK, true)).Methods(http.MethodGet)
	r.Handle("/v1/admin/users/{id}", s.updateUser()).Methods(http.MethodPatch)
	r.Handle("/v1/admin/users/{id}", s.byID("user.delete", http.StatusNoContent, true)).Methods(http.MethodDelete)
	r.Handle("/v1/admin/users/{id}/sessions", s.byID("session.end_user", http.StatusNoContent, true)).Methods(http.MethodDelete)
	r.Handle("/v1/admin/emails", s.sendEmail()).Methods(http.MethodPost)

	r.Handle("/v1/system/ping", s.ping()).Methods(http.MethodGet)
	r.Handle("/healthz", s.healthz()).Methods(http.MethodGet)
	r.Handle("/readyz", s.readyz()).Methods(http.MethodGet)
	r.Handle("/.well-known/jwks.json", s.jwks()).Methods(http.MethodGet)
	r.Handle("/docs", s.docsPage(docsHTML)).Methods(http.MethodGet)
	r.Handle("/docs/openapi.yaml", s.document(spec)).Methods(http.MethodGet)
	r.Handle("/docs/asyncapi", s.docsPage(asyncHTML)).Methods(http.MethodGet)
	r.Handle("/docs/asyncapi.yaml", s.document(asyncSpec)).Methods(http.MethodGet)
}
