//! Loads the probes through the test harness and reports success: used by the test that checks
//! the harness fails loudly, with the reason, where eBPF cannot be loaded.

fn main() {
    let capture = monitor_tests::capture::Capture::start();
    drop(capture);
    println!("probes loaded");
}
