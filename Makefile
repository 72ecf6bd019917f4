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

.PHONY: setup book serve links test test-unit test-notebooks notebooks diagrams student grade bench gpu-check gpu-wheels clean

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
#
# On a machine whose own Python already holds a CUDA build of torch (Colab, a GPU server), use
# that Python instead of the virtual environment, which would download torch again:
#   make gpu-check GPU_PYTHON=python3
# It needs this package's test and notebook dependencies. A GPU machine without a network gets
# them as wheels: `make gpu-wheels` (on a machine with one) downloads into .whl/ what a Python
# that already has torch, transformers, pytest and hypothesis still lacks, for Python
# $(WHEEL_PYTHON) on x86-64 Linux; `make gpu-check GPU_PYTHON=...` installs them from there first,
# into _build/gpu-site.
NANOGPT ?=
GPU_PYTHON ?=
GPU_RUN := $(or $(GPU_PYTHON),$(BIN)/python)
GPU_SITE := $(CURDIR)/_build/gpu-site
gpu-check: $(if $(GPU_PYTHON),,$(STAMP))
ifneq ($(GPU_PYTHON),)
	if ls .whl/*.whl >/dev/null 2>&1; then $(GPU_RUN) -m pip install -q --no-index --no-deps \
		--no-compile --upgrade --target $(GPU_SITE) .whl/*.whl; fi
endif
	$(if $(GPU_PYTHON),PYTHONPATH=$(GPU_SITE):$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}) \
		$(GPU_RUN) -m qkvcourse.gpu_check --report _build/gpu-check.md \
		$(if $(NANOGPT),--nanogpt $(NANOGPT))

# The notebook runner and the d2l reference (no dependencies, as above), pinned as resolved
# for Python 3.12 on 2026-12-07.
WHEEL_PYTHON ?= 3.12
GPU_WHEELS := asttokens==3.0.2 comm==0.2.3 debugpy==1.8.22 executing==2.3.0 \
	fastjsonschema==2.22.3 ipykernel==7.4.0 ipython==9.19.1 ipython-pygments-lexers==1.1.1 \
	jedi==0.20.1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter-client==8.10.0 \
	jupyter-core==5.9.1 matplotlib-inline==0.2.2 nbclient==0.11.0 nbformat==5.11.1 \
	nest-asyncio2==1.7.4 parso==0.8.7 pexpect==4.9.0 platformdirs==4.14.9 \
	prompt-toolkit==3.0.53 ptyprocess==0.7.0 pure-eval==0.2.4 pyzmq==27.3.0 \
	referencing==0.37.0 rpds-py==2026.9.1 stack-data==0.6.3 tornado==6.6.1 traitlets==5.16.1 \
	wcwidth==0.9.5 d2l==1.0.3
WHEEL_PLATFORMS := $(foreach p,manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_17 \
	manylinux2014 manylinux2010 manylinux1,--platform $(p)_x86_64)
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d .whl \
		--python-version $(WHEEL_PYTHON) --implementation cp $(WHEEL_PLATFORMS) $(GPU_WHEELS)

clean:
	rm -rf _build $(VENV)
