//! Native / node entry point: `rsa-verify-bench [candidate-substring]`, `ROUNDS` (default 5).
//! Times with process CPU time.

fn main() {
    let filter = std::env::args().nth(1);
    let rounds = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    for line in rsa_verify_bench::run(filter.as_deref(), rounds, false) {
        println!("{line}");
    }
}
