# Full test run: system packages if missing, Rust tests, then the cross-language suite
# against real Django 4.2/5.2/6.1 (SQLite, PostgreSQL and MariaDB servers it starts itself).
.PHONY: test deps compat serve

# One feature set everywhere, so cargo builds djauth once per run.
export DJAUTH_CARGO_FEATURES ?= mysql

# Fuzzing smoke run (fuzz/README.md): the four cheapest targets for this many seconds each,
# after a sanitizer build of its own (cold: 15 CPU-minutes, so 8+ min on 2 idle cores, 18 min
# measured on a busy one; after a change to djauth only: 2-5 min). 0 replays the seed corpus
# without fuzzing. Off by default: a cold sanitizer build does not fit CI's time budget beside
# the Django suites (`make test FUZZ_SMOKE_SECONDS=10`).
FUZZ_SMOKE_SECONDS ?= off

test: deps
	cargo test --all-targets --features "$(DJAUTH_CARGO_FEATURES)"
	$(if $(filter off,$(FUZZ_SMOKE_SECONDS)),@echo "== fuzz smoke run skipped",fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS))
	compat-tests/run.sh

deps:
	.ci/install-deps

# Only the Django compatibility suite; e.g. `make compat DJANGO="5.2"`.
compat: deps
	compat-tests/run.sh $(DJANGO)
