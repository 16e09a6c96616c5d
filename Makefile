# The two set-up commands: `make demo` (main job on the embedded default) and `make test`.
# Each creates .venv and installs the pins when pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tools that cannot share .venv's pins (checkov pins boto3 against ours): their own venv.
TOOLS   ?= .venv-tools
CHECKOV_VERSION := 3.3.30
TOOLS_STAMP     := $(TOOLS)/.installed-checkov-$(CHECKOV_VERSION)

# The CrossGuard pack's own environment (pulumi-policy pins protobuf 5; .venv has 6).
POLICY_VENV  ?= policy/venv
POLICY_STAMP := $(POLICY_VENV)/.installed

.PHONY: demo test install tools policy systools clean-state

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): constraints-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-tools.txt checkov==$(CHECKOV_VERSION)
	@rm -f $(TOOLS)/.installed-checkov-*
	@touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

$(POLICY_STAMP): policy/requirements.txt
	@test -x $(POLICY_VENV)/bin/python || $(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	@touch $(POLICY_STAMP)

policy: $(POLICY_STAMP)

# The edge runtime's rendered firewall and log-rotation files are checked by the real nft and logrotate
# (tests/test_edge_runtime.py). Installed from the OS packages when missing and this user may (root or
# passwordless sudo); otherwise those two checks are skipped with the reason, and the rest of the suite runs.
SYSTOOLS := nft logrotate
systools:
	@missing=""; for t in $(SYSTOOLS); do command -v $$t >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin:/sbin" command -v $$t >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables logrotate >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables logrotate >/dev/null 2>&1; } || \
	    echo "note: could not install nftables/logrotate; the edge firewall and log-rotation checks will be skipped"; \
	  else echo "note: nft/logrotate missing and no root: the edge firewall and log-rotation checks will be skipped"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/hybridserve local up

# tests/test_manifests.py scans the rendered manifests with this checkov (it fails, not skips, when set and missing).
test: $(STAMP) $(TOOLS_STAMP) $(POLICY_STAMP) systools
	HYBRIDSERVE_CHECKOV=$(abspath $(TOOLS))/bin/checkov HYBRIDSERVE_POLICY_PYTHON=$(abspath $(POLICY_VENV))/bin/python $(BIN)/python -m pytest -n 2 --dist loadfile tests

clean-state:
	rm -rf .state
