# Neural Networks for Engineers: course repository and sandboxed autograder.
#   make demo   set up .venv, build every assignment, grade the canned submissions, write the report
#   make test   run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast build grade report release validate clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
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

clean:
	rm -rf results build release .pytest_cache
