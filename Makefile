# The two commands of the quick start: `make serve` and `make test`.
.PHONY: setup setup-dev serve test lint pytest bench

setup:
	@bash scripts/setup.sh

setup-dev:
	@bash scripts/setup.sh dev

serve: setup
	.venv/bin/llmmultichat serve

lint: setup-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy kernel sdk

pytest: setup-dev
	@bash scripts/redis.sh
	@bash scripts/browser.sh
	.venv/bin/pytest -q

test: lint pytest

bench: setup-dev
	@bash scripts/redis.sh
	.venv/bin/python bench/kernel.py
