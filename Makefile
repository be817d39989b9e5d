# Meterflow: `make help` lists the targets. CI runs `make test` (see .ci/run).
SHELL := /bin/bash
GO ?= go
BIN := bin
STACK := deploy/local/stack.sh
GOBIN := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := 2026.2.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/meterflow and bin/firmware-sim
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/meterflow ./cmd/meterflow
	@if [ -f firmware-sim/main.go ]; then $(GO) build -o $(BIN)/firmware-sim ./firmware-sim; fi

.PHONY: run
run: build ## Start PostgreSQL, InfluxDB, the server and a simulated fleet; print URLs and logins
	@deploy/local/run.sh

.PHONY: stack-up
stack-up: ## Start the local PostgreSQL and InfluxDB only
	@$(STACK) up

.PHONY: stack-down
stack-down: ## Stop the local PostgreSQL and InfluxDB (dev and test instances)
	@$(STACK) down; MF_STACK_NAME=test $(STACK) down

.PHONY: test
test: ## Run every test against a real PostgreSQL and InfluxDB that it starts itself, browser tests in headless Chromium
	@MF_STACK_NAME=test MF_STACK_FAST=1 $(STACK) up >/dev/null
	@deploy/local/chromium.sh
	$(GO) vet ./...
	$(GO) test -race -timeout 12m -p 2 ./...

.PHONY: test-short
test-short: ## Run the tests without -race
	@MF_STACK_NAME=test MF_STACK_FAST=1 $(STACK) up >/dev/null
	@deploy/local/chromium.sh
	$(GO) test -timeout 10m ./...

.PHONY: bench
bench: ## Run the Go benchmarks of the hot paths (see docs/performance.md)
	@MF_STACK_NAME=test MF_STACK_FAST=1 $(STACK) up >/dev/null
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./internal/...

.PHONY: bench-e2e
bench-e2e: build ## End-to-end load run on this machine (METERS, RATE, DURATION, WORKERS...: docs/performance.md)
	$(GO) build -o $(BIN)/verify ./firmware-sim/verify
	@deploy/local/bench-e2e.sh

.PHONY: lint
lint: ## go vet and staticcheck (installed with go install when missing)
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## Stop the local stack and delete its data and the binaries
	-@$(STACK) reset; MF_STACK_NAME=test $(STACK) reset
	rm -rf $(BIN) .local test-artifacts
