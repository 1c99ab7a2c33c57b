# bannerwatch — the two entry points the README starts with, and their parts.
#   make run    install dependencies, build, start the daemon with policies/default.yaml
#   make test   install dependencies, build, run every test (root runs the kernel tests too)
BUILD ?= build
JOBS ?= $(shell nproc)
RUN_ARGS ?=

.PHONY: all deps configure build test run bench clean

all: build

deps:
	./scripts/install-deps

configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps configure
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900

run: deps configure
	cmake --build $(BUILD) -j$(JOBS) --target bannerwatch
	./$(BUILD)/bannerwatch run $(RUN_ARGS)

bench: build
	BUILD=$(BUILD) ./bench/run

clean:
	rm -rf $(BUILD)
