# Set-up and entry points. `make demo` installs everything and runs the comparison;
# `make test` runs the tests and the sample-quality gate.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The CPU wheel of torch; an unpinned torch would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
# OpenMP threads that spin while waiting made training steps 5 to 60 times slower
# on a shared 2-core machine; passive waiting costs nothing when the machine is idle.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo run leaderboard latent audit test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Renders skulls of the embedded dataset, then runs the full comparison on the default
# (quick) preset into runs/quick, leaderboards in runs/quick/report.
demo: install
	$(BIN)/bench data preview --out previews
	$(BIN)/bench run --methods otfm,ddpm --seeds 5

run: install
	$(BIN)/bench run --methods otfm,ddpm --seeds 5

# Regenerates the committed reference leaderboard of the quick preset (reuses finished cells).
leaderboard: run
	$(BIN)/bench report runs/quick --out leaderboards/quick

# The learned-latent comparison (preset latent; the autoencoders are fitted once and cached)
# and its committed leaderboard.
latent: install
	$(BIN)/bench run --config latent --methods otfm,ddpm --seeds 5
	$(BIN)/bench report runs/latent --out leaderboards/latent

# The committed metric audits: of the quick configuration (leaderboards/audit) and of the ci
# one (leaderboards/audit/ci, which picks the gate's metrics). Scored sets are reused.
AUDIT_FILES := audit.csv sensitivity.csv sensitivity.md heatmap.png index.html corruptions.json
audit: install
	$(BIN)/bench audit --config quick --seeds 3 --out runs/audit-quick --quiet
	$(BIN)/bench audit --config ci --seeds 3 --out runs/audit-ci --quiet
	mkdir -p leaderboards/audit/ci
	for f in $(AUDIT_FILES); do cp runs/audit-quick/$$f leaderboards/audit/; \
		cp runs/audit-ci/$$f leaderboards/audit/ci/; done

# Lint, types and layer contracts (setup.cfg), the tests, then the sample-quality gate
# (the ci preset against leaderboards/ci-baseline.json).
test: install lint
	$(BIN)/pytest -q
	$(BIN)/bench check

lint: install
	$(BIN)/python -m flake8
	$(BIN)/mypy
	$(BIN)/lint-imports

# Benchmarks of the figures in the README; one BLAS thread so that "one core" means one.
bench: install
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/pytest -q tests/performance \
		--benchmark-enable --benchmark-only --benchmark-columns=min,mean,median,rounds

clean:
	rm -rf $(VENV) previews .pytest_cache .benchmarks
