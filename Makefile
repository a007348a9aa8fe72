# Full test run: Rust tests, then the cross-language suite against real Django 4.2/5.2/6.1.
.PHONY: test compat

test:
	cargo test --all-targets
	compat-tests/run.sh

# Only the Django compatibility suite; e.g. `make compat DJANGO="5.2"`.
compat:
	compat-tests/run.sh $(DJANGO)
