# bannerwatch — the two entry points the README starts with, and their parts.
#   make run    install dependencies, build, start the daemon with policies/default.yaml
#   make test   install dependencies, build, run every test (root runs the kernel tests too, and
#               the VM suite: the root suites on other kernels; CTEST_ARGS='-LE vm' leaves it out)
BUILD ?= build
JOBS ?= $(shell nproc)
RUN_ARGS ?=
CTEST_ARGS ?=

.PHONY: all deps configure build test run bench clean

all: build

deps:
	./scripts/install-deps

configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps configure
	cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900 $(CTEST_ARGS)

run: deps configure
	cmake --build $(BUILD) -j$(JOBS) --target bannerwatch
	./$(BUILD)/bannerwatch run $(RUN_ARGS)

bench: build
	BUILD=$(BUILD) ./bench/run

clean:
	rm -rf $(BUILD)
