# usher — see README.md. Every target works on a fresh machine with Go and
# the services of README.md (make services starts them here).
GO       ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can report its own
# -fuzztime deadline as a failure (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 100000x
export PATH := $(PATH):$(shell $(GO) env GOPATH)/bin

.PHONY: run test fuzz build bench bench-split bench-capacity bench-go migrate-up migrate-down lint services

## run: start the services (and Mailpit) if needed, then usher serve on 127.0.0.1:8080
run:
	bash .ci/services --mailpit
	$(GO) run ./cmd/usher serve

## test: vet, format check, and every test against the real services
test: lint
	$(GO) test -count=1 -timeout 9m ./...

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## build: the usher binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/usher ./cmd/usher

## bench: a fresh usher serve, the quick suite of BUDGETS.md (results.json, report.html)
bench:
	bash benchmarks/run.sh serve

## bench-split: gateway + two nodes + bridge + mailer as processes; capacity reported, no floors judged
bench-split:
	bash benchmarks/run.sh split --mode capacity

## bench-capacity: the highest rate each scenario sustains (for information)
bench-capacity:
	bash benchmarks/run.sh serve --mode capacity

## bench-go: Go benchmarks of the hot paths (token verification, NATS hop,
## actor round trip, cache hit, refresh rotation, hashing)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./actors/ ./store/ ./internal/token/ ./internal/password/

migrate-up:
	$(GO) run ./cmd/usher migrate up

migrate-down:
	$(GO) run ./cmd/usher migrate down

lint:
	$(GO) vet ./...
	$(GO) vet -tags testhooks ./...
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

services:
	bash .ci/services
