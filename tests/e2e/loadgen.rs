//! The load generator drives the real relay and reports numbers (it is a benchmark tool; this
//! only checks that it works end to end and that what it prints is a measurement).

use std::process::Command;

/// The number that starts the first line beginning with `prefix` and containing `marker`.
fn number_after(text: &str, prefix: &str, marker: &str) -> f64 {
    text.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| l.strip_prefix(prefix))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no line {prefix:?} followed by a number in:\n{text}"))
}

fn run(args: &[&str]) -> String {
    let out = Command::new(tessera_e2e::bin_path("tessera-loadgen"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tessera-loadgen {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn loadgen_accept_latency_and_idle_report_measurements() {
    let accept = run(&[
        "accept",
        "--clients",
        "8",
        "--recipients",
        "2",
        "--seconds",
        "1",
    ]);
    assert!(
        number_after(&accept, "accept: ", "accepts/s") > 0.0,
        "{accept}"
    );
    assert!(accept.contains("errors 0"), "{accept}");

    let latency = run(&[
        "latency",
        "--clients",
        "4",
        "--rate",
        "200",
        "--seconds",
        "1",
    ]);
    let samples = number_after(&latency, "latency: ", "samples");
    assert!(samples >= 150.0, "{latency}");

    let idle = run(&["idle", "--connections", "50"]);
    assert!(idle.contains("KiB per idle connection"), "{idle}");
}
