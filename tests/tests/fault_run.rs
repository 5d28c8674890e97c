//! The fault-injection run, short: `fault-run --seconds 30` (Redis, PostgreSQL, a UCServer and
//! a MediaServer each fail in turn under a mixed load) must lose and duplicate nothing and hold
//! every invariant it checks. The program's own JSON report is the evidence; it is printed.

use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn a_short_fault_run_loses_nothing_and_holds_every_invariant() {
    let output = Command::new(env!("CARGO_BIN_EXE_fault-run"))
        .args(["--seconds", "30"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("fault-run runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("fault-run prints one JSON object ({e}): {stdout}"));
    let messages = &report["messages"];
    assert!(
        messages["accepted"].as_u64().unwrap_or(0) > 100,
        "the load ran: {messages}"
    );
    assert_eq!(messages["lost"], 0, "{report}");
    assert_eq!(messages["duplicated"], 0, "{report}");
    assert_eq!(
        messages["delivered"], messages["expected_deliveries"],
        "{report}"
    );
    assert_eq!(report["faults_survived"], 4, "{report}");
    assert_eq!(report["history"]["complete"], true, "{report}");
    assert_eq!(report["softphone_leases_in_use"], 0, "{report}");
    assert!(
        report["calls"]["connected"].as_u64().unwrap_or(0) > 0,
        "calls ran: {report}"
    );
    assert_eq!(report["invariants_held"], true, "{report}");
    assert!(output.status.success(), "exit status {}", output.status);
}
