# The two commands of the README:
#   make train   set everything up and train the default model (DCGAN on Fashion-MNIST)
#   make test    set everything up, check the import layers (lint-imports) and the code (ruff:
#                pyflakes, import order, bugbear), and run the test suite
VENV ?= .venv
ARGS ?=

.PHONY: setup train test bench clean
setup:
	@VENV=$(VENV) bash scripts/setup.sh

train: setup
	$(VENV)/bin/ganforge train --config dcgan-fashion-mnist $(ARGS)

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check ganforge tests benchmarks scripts
	$(VENV)/bin/python -m pytest -q -n 2 $(ARGS)

bench: setup
	$(VENV)/bin/python benchmarks/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
