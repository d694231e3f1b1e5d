# Two commands do everything on a fresh machine: `make run` (the demo) and `make test`.
# Both create .venv on first use and install the exact pins from envs/.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/default.yaml
CORES ?= all

.PHONY: run test bench lint clean-demo

$(INSTALLED): envs/requirements.txt envs/constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r envs/requirements.txt -c envs/constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(INSTALLED)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG)
	@echo "Pictures and statistics: results/$$($(PY) -c "import yaml; print(yaml.safe_load(open('$(CONFIG)'))['run'])")/inspect/"

test: $(INSTALLED)
	$(PY) -m pytest

bench: $(INSTALLED)
	$(PY) tests/benchmarks/bench_events.py

lint: $(INSTALLED)
	$(VENV)/bin/snakemake --lint --configfile $(CONFIG)
	$(VENV)/bin/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf data/synthetic results/demo
