# The two commands of the README:
#   make run    build, fetch the default model (SmolLM2-135M-Instruct), and chat with it
#   make test   build and run every test, then again under ASan+UBSan
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PROMPT ?= What are three good reasons to learn to cook at home? Answer briefly.
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: all setup build model run chat test test-fast test-asan bench clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

model:
	@bash scripts/fetch_model.sh

run: build model
	$(BUILD)/chord run -m $(MODEL) -p "$(PROMPT)" -n 200 --temp 0

chat: build model
	$(BUILD)/chord chat -m $(MODEL)

test: build model
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(MAKE) test-asan

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCHORD_SANITIZE=ON -DCHORD_CUDA=OFF

test-asan: setup $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	CHORD_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE slow

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
