# The two commands of the README's quick start.
.PHONY: run test lint bench
run:            ## set up, create the example state repository, run the daemon (Ctrl-C stops)
	bash scripts/run-example.sh
test:           ## set up everything the tests need, then run the whole suite
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy && .venv/bin/lint-imports
bench:
	.venv/bin/python bench/plan_scale.py
