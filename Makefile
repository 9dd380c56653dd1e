# `make demo` and `make test` set up .venv on first use (CPU torch pinned), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
DEMO_OUT ?= demo-out
PORT   ?= 8000

.PHONY: setup demo test bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,viz,serve]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/lxmert quickstart --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/lxmert bench

# the demo's VQA model in a browser: http://127.0.0.1:$(PORT)/ (after `make demo`)
serve: $(STAMP)
	@test -d $(DEMO_OUT)/vqa/pretrained/best || { echo "no $(DEMO_OUT)/vqa/pretrained/best: run 'make demo' first"; exit 1; }
	$(BIN)/lxmert serve --model $(DEMO_OUT)/vqa/pretrained/best --features $(DEMO_OUT)/world/features/store --port $(PORT)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build dist src/*.egg-info
