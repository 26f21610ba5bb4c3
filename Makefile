# otpd: two commands to know.
#   make run    build and start the daemon on its defaults (socket, database, key and SMS
#               outbox in ./run/), installing the system packages it needs when missing
#   make test   run every test (unit, integration against the real otpd binary, CLI, PHP client)
# Others: make build, make release, make bench, make fuzz, make generate, make check-generated, make lint

SHELL := /bin/bash
SWIFT ?= swift
RUN_DIR ?= run

.PHONY: run test build release deps bench fuzz generate check-generated lint clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

run: deps
	$(SWIFT) build --product otpd
	@mkdir -p $(RUN_DIR)
	@echo "otpd: socket $(RUN_DIR)/otpd.sock, database $(RUN_DIR)/otpd.sqlite, SMS outbox $(RUN_DIR)/outbox.jsonl"
	cd $(RUN_DIR) && exec $(CURDIR)/.build/debug/otpd $(OTPD_FLAGS)

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	cd clients/php && phpunit

bench: deps
	scripts/bench.sh

# libFuzzer + AddressSanitizer on the decoders and on whole connections (half the time each);
# FUZZ_SECONDS=600 for longer.
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

generate:
	scripts/generate-proto.sh
	scripts/generate-php.sh

check-generated:
	scripts/check-generated-code.sh

# swift-format with .swift-format (120 columns) over every hand-written Swift file; the
# generated ones are checked against proto/ by check-generated instead. CI runs both.
lint:
	git ls-files '*.swift' | grep -v '\.generated\.swift$$' | xargs $(SWIFT) format lint --strict

clean:
	rm -rf .build run
