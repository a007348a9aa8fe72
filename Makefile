# Full test run: system packages if missing, Rust tests, then the cross-language suite
# against real Django 4.2/5.2/6.1 (SQLite, PostgreSQL and MariaDB servers it starts itself).
.PHONY: test deps compat serve

# One feature set everywhere, so cargo builds djauth once per run.
export DJAUTH_CARGO_FEATURES ?= mysql

test: deps
	cargo test --all-targets --features "$(DJAUTH_CARGO_FEATURES)"
	compat-tests/run.sh

deps:
	.ci/install-deps

# Only the Django compatibility suite; e.g. `make compat DJANGO="5.2"`.
compat: deps
	compat-tests/run.sh $(DJANGO)
