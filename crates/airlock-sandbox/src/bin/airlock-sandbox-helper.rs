//! Stand-alone sandbox helper, used by this crate's tests and benchmarks. The server
//! binary does the same thing when it sees `HELPER_ARG` as its first argument.

fn main() {
    if airlock_sandbox::is_helper_invocation() {
        airlock_sandbox::helper_main();
    }
    eprintln!(
        "usage: airlock-sandbox-helper {} (started by the sandbox)",
        airlock_sandbox::HELPER_ARG
    );
    std::process::exit(2);
}
