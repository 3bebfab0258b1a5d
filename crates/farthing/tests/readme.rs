//! The README's walk-through, run as written against `farthing demo`: every shell block of the
//! section "A five-minute walk-through" (except starting the demo and pasting its key, which
//! this test does itself), with `curl` failing on any HTTP error. The docs cannot drift from
//! the code without this test failing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The shell blocks of the walk-through, with the lines this test does itself left out.
fn walk_through() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let section = readme
        .split("## A five-minute walk-through")
        .nth(1)
        .expect("the walk-through section")
        .split("\n## ")
        .next()
        .expect("its text");
    let mut script = String::new();
    let mut in_block = false;
    for line in section.lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, line)
                if line.starts_with("cargo run")
                    || line.starts_with("export KEY=")
                    || line.starts_with("export API=") => {}
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let script = walk_through();
    assert!(
        script.contains("/v1/charges") && script.contains("webhook_endpoints"),
        "{script}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let api = format!("http://127.0.0.1:{port}");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_farthing"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(dir.path().join("demo.db"))
        .env_remove("FARTHING_CONFIG")
        .env("FARTHING_PUBLIC_URL", &api)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start farthing demo");
    let stdout = demo.stdout.take().expect("piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut key = None;
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints its key and starts");
        if let Some(found) = line.trim().strip_prefix("test API key: ") {
            key = Some(found.to_owned());
        }
        if line.contains("Press Ctrl-C to stop") {
            break;
        }
    }
    let key = key.expect("the demo printed a test API key");

    // curl fails on any HTTP error; the receiver's lines go to the output, which the epilogue
    // (not part of the README) waits on: the webhooks must arrive.
    let output_file = dir.path().join("output.txt");
    let program = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --fail-with-body --max-time 10 \"$@\"; }}\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         {script}\n\
         for _ in $(seq 200); do grep -q 'received evt_[^ ]* charge.succeeded' \"$OUT\" && exit 0; sleep 0.1; done\n\
         echo 'no charge.succeeded webhook arrived' >&2; exit 1\n"
    );
    let output = std::fs::File::create(&output_file).expect("output file");
    let status = Command::new("bash")
        .arg("-c")
        .arg(&program)
        .current_dir(dir.path())
        .env("API", &api)
        .env("KEY", &key)
        .env("OUT", &output_file)
        .stdout(output.try_clone().expect("clone"))
        .stderr(output)
        .status()
        .expect("run bash");
    let printed = std::fs::read_to_string(&output_file).unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let _ = demo.wait();
    assert!(
        status.success(),
        "the walk-through failed ({status}):\n{printed}\n---\n{program}"
    );
    // What the walk-through promises, in its own output.
    assert!(printed.contains("\"object\":\"list\""), "{printed}");
    assert!(
        printed.contains("\"type\":\"refund\""),
        "the statement shows the refund:\n{printed}"
    );
    assert!(printed.contains("\"type\":\"top_up\""), "{printed}");
    assert!(printed.contains("received "), "{printed}");
}
