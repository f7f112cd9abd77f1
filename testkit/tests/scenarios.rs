//! The behaviour scenarios on the host: the same `no_std` code
//! `firmware-tests/` runs on a Cortex-M4 under QEMU.

#[test]
fn every_scenario_passes_on_the_host() {
    let mut failures = Vec::new();
    let (passed, failed) = wharf_testkit::run_all(|name, r| {
        if let Err(f) = r {
            failures.push(format!("{name}: {}:{}: {}", f.file, f.line, f.what));
        }
    });
    assert_eq!(failed, 0, "failed scenarios:\n{}", failures.join("\n"));
    assert!(passed >= 30, "only {passed} scenarios ran");
}

/// A failing check names the scenario's own line, not the helper's.
#[test]
fn a_failure_names_the_line_of_the_check_that_failed() {
    let (_, failed) = wharf_testkit::run_all(|_, _| {});
    assert_eq!(failed, 0);
    let (line, outcome) = wharf_testkit::failing_example();
    let f = outcome.unwrap_err();
    assert!(f.file.ends_with("scenarios.rs"), "{f:?}");
    assert_eq!(f.what, "lease was not queued");
    assert_eq!(f.line, line, "{f:?}");
}
