# otpd: three commands to know.
#   make run    build and start the daemon on its defaults (socket, database, key and SMS
#               outbox in ./run/), installing the system packages it needs when missing
#   make demo   the demo shop: otpd and a PHP admin with the two-factor pages on
#               http://127.0.0.1:8080/ (prints the URL and the admin's password)
#   make test   run every test (unit, integration against the real otpd binary on SQLite and on
#               a throw-away PostgreSQL cluster, CLI, PHP client and its PSR-12 style, the pages
#               in a real browser)
# Others: make build, make release, make bench, make fuzz, make generate, make check-generated, make lint,
#         make php-lint, make browser-test

SHELL := /bin/bash
SWIFT ?= swift
RUN_DIR ?= run

.PHONY: run demo test build release deps bench fuzz generate check-generated lint php-lint browser-test clean

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

# The demo shop (scripts/demo.sh): builds otpd unless OTPD_BIN names one; DEMO_PORT, DEMO_DIR.
demo: deps
	@if [ -z "$$OTPD_BIN" ]; then $(SWIFT) build --product otpd; fi
	scripts/demo.sh

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	@echo "== the domain's tests again, on PostgreSQL (a throw-away cluster)"
	OTPD_TEST_STORE=postgresql $(SWIFT) test --skip-build --filter TwoFactorServiceTests
	$(MAKE) php-lint
	cd clients/php && phpunit
	$(MAKE) browser-test

# The PHP client, pages, demo and tests: `php -l` on every PHP file, then PSR-12 (phpcs.xml.dist).
php-lint:
	@out=$$(find clients/php -name '*.php' -not -path '*/vendor/*' -print0 | xargs -0 -n 1 -P 2 php -l -n 2>&1) \
	  || { echo "$$out" | grep -v '^No syntax errors'; exit 1; }; \
	  echo "php -l: $$(echo "$$out" | grep -c '^No syntax errors') files, no syntax errors"
	cd clients/php && phpcs

# The product document walked in headless Chromium against the demo shop (otpd at
# .build/debug/otpd or $$OTPD_BIN); screenshots in $$OTPD_BROWSER_ARTIFACTS or a temp directory.
browser-test:
	/usr/bin/python3 clients/php/tests/browser/walk_product.py

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
# generated ones are checked against proto/ by check-generated instead; and no file may hold a
# merge conflict's markers. CI runs both.
lint:
	git ls-files '*.swift' | grep -v '\.generated\.swift$$' | xargs $(SWIFT) format lint --strict
	@! git grep -n -E '^(<<<<<<<|>>>>>>>) ' -- . || { echo "merge conflict markers (above)"; exit 1; }

clean:
	rm -rf .build run
