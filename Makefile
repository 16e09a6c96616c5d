# The two set-up commands: `make demo` (main job on the embedded default) and `make test`.
# Each creates .venv and installs the pins when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean-state

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hybridserve local up

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

clean-state:
	rm -rf .state
