# sluice — build and test.
#
#   make test    the whole suite, as CI runs it (installs what it needs)
#   make build   bin/sluice
#   make bench   Go benchmarks of the decode and commit paths
#   make fuzz    each fuzz target for FUZZTIME (default 30s)

GO       ?= go
FUZZTIME ?= 30s
PKGS     := ./...

.PHONY: test deps check build bench fuzz clean

test: deps check
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

deps:
	@scripts/deps.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

build: deps
	$(GO) build -o bin/sluice ./cmd/sluice

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz:
	@$(GO) list -f '{{.ImportPath}} {{.Dir}}' $(PKGS) | while read pkg dir; do \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
