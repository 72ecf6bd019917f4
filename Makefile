# qkvcourse: `make book` builds the book, `make test` runs every test (nbval over
# every notebook included). Both create the virtual environment .venv when it is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA
# packages on a machine without a GPU. Override on a GPU machine, e.g.
#   make test TORCH="torch"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.qkvcourse-installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup book serve links test test-unit test-notebooks notebooks diagrams student grade bench gpu-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,book]"
	# d2l is a test reference only; its pins (numpy 1.23, pandas 2.0...) break modern
	# environments, so it is installed without its dependencies.
	$(BIN)/python -m pip install -q --no-deps "d2l==1.0.3"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(STAMP)

# --all: Sphinx skips copying static files (book/_static/*.css) when no page is out of date, so
# an incremental build would keep a stale stylesheet; a full build takes about 20 s.
book: $(STAMP)
	$(BIN)/jupyter-book build . --all --warningiserror --keep-going
	@echo "Book: _build/html/index.html"

# Serve the built book (building it first if there is none) at http://127.0.0.1:$(PORT)/
PORT ?= 8000
HTML ?= _build/html
serve:
	@test -f $(HTML)/index.html || $(MAKE) book
	@echo "Serving the book at http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	@$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory $(HTML)

# Rewrite every Colab link, Colab install cell and install command from _config.yml's
# repository.url (book/links.py): publishing under another name is one edit and `make links`.
links: $(STAMP)
	$(BIN)/python book/links.py

# The graded sheets (notebooks/exercises) are tested by tests/test_grading_sheets.py and
# tests/test_autograde.py, not by nbval.
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	--ignore=notebooks/exercises -p no:cacheprovider

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks $(NBVAL)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest notebooks $(NBVAL)

# Re-execute every chapter in place (after changing the package), storing fresh outputs.
# `make notebooks NB=07_transformer.ipynb` re-executes one chapter.
NB ?= *.ipynb
notebooks: $(STAMP)
	cd notebooks && for nb in $(NB); do \
		MPLBACKEND=module://matplotlib_inline.backend_inline ../$(BIN)/jupyter execute --inplace $$nb || exit 1; \
	done
	$(BIN)/python tests/clean_notebooks.py

# Redraw the SVG diagrams (book/diagrams/chNN.py -> notebooks/figures/*.svg); a test fails
# when a committed diagram differs from what the code draws.
diagrams: $(STAMP)
	$(BIN)/python book/diagrams/build.py

# Graded exercises: regenerate the student editions (and the public cases) after editing a
# source sheet in notebooks/exercises/sources or a question in qkvcourse/grading/instructor, and
# grade a folder of submissions against one sheet, each in a sandbox (book/grading.md):
#   make grade SUBMISSIONS=path/to/submissions OUT=grades SHEET=ch03_scoring_functions [JOBS=4]
student: links
	$(BIN)/python -m qkvcourse.grading student

SUBMISSIONS ?= submissions
OUT ?= grades
JOBS ?= 2
SHEET ?=
grade: $(STAMP)
	@test -n "$(SHEET)" || { echo "name the sheet: make grade SHEET=ch03_scoring_functions ..."; exit 2; }
	$(BIN)/python -m qkvcourse.grading grade $(SUBMISSIONS) --out $(OUT) --jobs $(JOBS) --sheet $(SHEET)

bench: $(STAMP)
	$(BIN)/python -m qkvcourse.benchmarks

# Every GPU check (CUDA tests, sync-debug mode, each chapter at its GPU size, the GPU benchmarks)
# in one run of under eight minutes: _build/gpu-check.md
NANOGPT ?=
gpu-check: $(STAMP)
	$(BIN)/python -m qkvcourse.gpu_check --report _build/gpu-check.md $(if $(NANOGPT),--nanogpt $(NANOGPT))

clean:
	rm -rf _build $(VENV)
