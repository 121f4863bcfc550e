# calarb: `make demo` and `make test` are the two commands; both set up on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
JOBS   ?= 2

BOARD  ?= colorlight-5a75b

.PHONY: setup test sim synth bitstream program bench demo soak docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Everything CI runs. Verilator builds are cached under build/ and reused.
test: setup
	$(PY) -m protocols.registers --check
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --dist loadfile

# Gateware testbenches only (amaranth.sim and cocotb on Verilator).
sim: setup
	$(PY) -m pytest -q -m sim

# Out-of-context synthesis of the core for LFE5U-25F and LFE5UM5G-85F (utilisation and fmax).
synth: setup
	$(PY) -m hw.synth --out build/synth

# A board bitstream (YoWASP Yosys + nextpnr); fails if a clock misses its constraint.
bitstream: setup
	$(PY) -m hw.bitstream --board $(BOARD)

# Program a connected board with openFPGALoader.
program: setup
	$(PY) -m hw.bitstream --board $(BOARD) --program

bench: setup
	$(PY) -m bench.rx_pipeline
	$(PY) -m bench.simnic
	$(PY) -m bench.itch_codec
	$(PY) -m bench.book
	$(PY) -m bench.calibration
	$(PY) -m bench.fix
	$(PY) -m bench.fast_codec
	$(PY) -m bench.host_stages

# The main job: a one-minute run of the whole loop (exchange, simulated NIC, host); prints the run directory.
demo: setup
	$(PY) -m calarb.cli run-demo --duration 60 --run-dir build/demo-run

# Ten minutes of the loop at a high feed rate with injected faults, then the end checks (not in CI).
soak: setup
	OPENBLAS_NUM_THREADS=1 $(PY) -m calarb.soak --minutes 10 --run-dir build/soak

docs: setup
	$(PY) -m protocols.registers

clean:
	rm -rf build .pytest_cache .hypothesis
