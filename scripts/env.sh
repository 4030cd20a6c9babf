# Sourced by the scripts: shared environment for builds and tests.
# One cargo target dir per machine, so a fresh clone (CI) reuses what this
# machine already compiled instead of rebuilding candle and leptos from scratch.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sprig/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# wasm-bindgen tests: Debian's chromedriver driving Debian's chromium.
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="${WASM_BINDGEN_TEST_WEBDRIVER_JSON:-$PWD/tests/webdriver.json}"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"
# Never let an npm package download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
