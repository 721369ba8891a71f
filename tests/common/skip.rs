//! Tests that cannot run on a machine (no root, a tool or service missing) say why and pass,
//! unless CI asks for every test (`REQUIRE_ALL_TESTS=1`). Shared by the integration tests and,
//! through `#[path]`, by the unit tests that start a real redis-server.

/// Set to 1 by CI (ci/suites/10-rust.sh), where root and every tool the tests use exist.
pub const REQUIRE_ALL_TESTS: &str = "REQUIRE_ALL_TESTS";

/// For a test that cannot run on this machine: says why and lets it pass, or, with
/// `REQUIRE_ALL_TESTS=1`, fails it with the same reason. libtest prints `ok` for a test that
/// returned early, so only this makes a green CI run mean that the test ran.
pub fn skip(test: &str, why: &str) {
    let required = std::env::var(REQUIRE_ALL_TESTS).is_ok_and(|value| value == "1");
    assert!(
        !required,
        "{test} cannot run here: {why} ({REQUIRE_ALL_TESTS}=1 makes a skip a failure)"
    );
    eprintln!("skipped {test}: {why}");
}
