//! Nothing: the package exists for its `e2e` test binary (tests/e2e/main.rs).
