# The two set-up commands README.md shows. Each creates .venv inside the project on first
# use (torch pinned to the CPU wheel through constraints.txt) and then does its job.
VENV ?= .venv
PYTHON ?= python3
PIP = $(VENV)/bin/python -m pip

.PHONY: demo test test-slow lint clean

demo: $(VENV)/.installed
	$(VENV)/bin/compress --target-flops 0.5

# The default suite plus the one slow test that opens the HTML report in headless Chromium
# (a few seconds; it reuses the suite's small run, and skips when chromium is absent).
# --durations: the slowest tests are listed, so the suite's time (kept under ~8 min) is
# watched in every CI log.
test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not slow or browser" --durations=15

test-slow: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m slow

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check compressor tests benchmarks

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
