# Neural Networks for Engineers: course repository and sandboxed autograder.
#   make demo   set up .venv, build every assignment, grade the canned submissions, write the report
#   make test   run the whole test suite (what CI runs)
# Supported Pythons: 3.11.2 and later 3.11, 3.12, 3.13 (requires-python in pyproject.toml).
# Choose one with PYTHON, e.g. `make demo PYTHON=python3.12`; VENV names the environment folder.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast build grade report release validate clean check-python lock

# Before anything is installed: an unsupported interpreter stops here with the versions that work.
check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: no interpreter named '$(PYTHON)'; choose one with PYTHON=, e.g. make demo PYTHON=python3.12" >&2; exit 2; }
	@$(PYTHON) tools/check_python.py

$(STAMP): requirements.lock pyproject.toml
	@$(MAKE) --no-print-directory check-python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	# ipykernel leaves an empty folder in $$TMPDIR and creates ~/.ipython: point both inside the venv, then remove them.
	mkdir -p $(VENV)/tmp && TMPDIR=$(VENV)/tmp IPYTHONDIR=$(VENV)/tmp/ipython $(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null && rm -rf $(VENV)/tmp
	$(PY) -m autograder prepare-data
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(PY) -m autograder build

grade: $(STAMP)
	@for dir in tests/submissions/*/; do \
	  id=$$(basename $$dir); \
	  $(PY) -m autograder grade $$id $$dir --out results/$$id || exit 1; \
	done

report: $(STAMP)
	$(PY) -m autograder report $$(ls -d results/*/ | grep -v results/report/) --out results/report

release: $(STAMP)
	$(PY) -m autograder release --out release

demo: $(STAMP) validate build grade report
	@echo
	@echo "Done."
	@echo "  student notebooks:  assignments/<id>/<id>.ipynb   (otter bundles: autograder/bundles/)"
	@echo "  Gradescope zips:    build/gradescope/<id>-gradescope.zip"
	@echo "  grades:             results/<id>/grades.csv, results/<id>/results/*.json, results/<id>/feedback/*.md"
	@echo "  report:             results/report/report.html (+ gradebook.csv, canvas_gradebook.csv, item_analysis.csv)"

validate: $(STAMP)
	$(PY) -m autograder validate

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Re-resolve requirements.lock from requirements.txt for every supported Python at once.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile --universal --python-version 3.11.2 requirements.txt -o requirements.lock \
	  --custom-compile-command "make lock"

clean:
	rm -rf results build release .pytest_cache
