# Full test run: system packages if missing, Rust tests, then the cross-language suite
# against real Django 4.2/5.2/6.1 (SQLite, PostgreSQL and MariaDB servers it starts itself).
.PHONY: test deps compat serve

# One feature set everywhere, so cargo builds djauth once per run.
export DJAUTH_CARGO_FEATURES ?= mysql

# Fuzzing smoke run (fuzz/README.md): the four cheapest targets for this many seconds each
# (10: 46 s in all), after a sanitizer build of its own. fuzz/ builds djauth without default
# features (the formats core only, no server dependencies): cold, 3.5 CPU-minutes, 5 min wall
# measured with one cargo job on 2 busy cores. 0 replays the seed corpus without fuzzing; `off`
# skips it.
FUZZ_SMOKE_SECONDS ?= 10

test: deps
	cargo test --all-targets --features "$(DJAUTH_CARGO_FEATURES)"
	$(if $(filter off,$(FUZZ_SMOKE_SECONDS)),@echo "== fuzz smoke run skipped",fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS))
	compat-tests/run.sh

deps:
	.ci/install-deps

# Only the Django compatibility suite; e.g. `make compat DJANGO="5.2"`.
compat: deps
	compat-tests/run.sh $(DJANGO)
