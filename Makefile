# Two commands do everything on a fresh machine: `make run` (the demo) and `make test`.
# Both create .venv on first use and install the exact pins from envs/.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/default.yaml
CORES ?= all

.PHONY: run test bench lint clean-demo

PYTHON ?= python3

$(INSTALLED): envs/requirements.txt envs/constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "evseg needs Python >= 3.11 (the pinned numpy, pandas and snakemake do); run make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r envs/requirements.txt -c envs/constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(INSTALLED)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG)
	@run=results/$$($(PY) -c "import yaml; print(yaml.safe_load(open('$(CONFIG)')).get('run', 'demo'))"); \
	pipeline=$$($(PY) -c "import yaml; print(yaml.safe_load(open('$(CONFIG)')).get('pipeline', 'hpl_ess'))"); \
	$(VENV)/bin/snakemake --quiet all --report $$run/report.html --configfile $(CONFIG) && \
	echo "Report (the run's figures and pictures, captioned): $$run/report.html"; \
	if [ "$$pipeline" = cmda ]; then \
	echo "Summary (18-class test mIoU of every model and seed, and per output): $$run/cmda/summary.csv, summary_means.csv"; \
	echo "Pictures: $$run/cmda/evaluate/*/seed*/panels.png"; \
	elif [ "$$pipeline" = ecddp ]; then \
	echo "Summary (test mIoU from scratch and from the pre-trained backbone, per seed): $$run/evaluate/summary.csv, summary_means.csv"; \
	echo "Pictures: $$run/pretrain_events/similarity.png, $$run/evaluate/*/seed*/panels.png"; \
	else \
	echo "Summary (test mIoU of every model, pseudo-label quality after each step): $$run/evaluate/summary.csv"; \
	echo "Pictures: $$run/evaluate/*/seed*/panels.png, $$run/psa/pictures.png, $$run/scc/pictures.png, $$run/inspect/"; \
	fi

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) tests/benchmarks/bench_events.py

lint: $(INSTALLED)
	$(VENV)/bin/snakemake --lint --configfile $(CONFIG)
	$(VENV)/bin/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf data/synthetic results/demo data/synthetic_cmda results/cmda_demo results/ecddp_demo
