//! A headless browser for tests of the HTML report: Debian's chromium loads a file and
//! prints the DOM it built, so tests assert on what a browser sees, not on our own bytes.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long chromium may take to load one page before it is killed.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Flags that work as root on a machine without a network: no sandbox (root), no GPU,
/// and nothing that phones home (which would hang on a closed network).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Where chromium is: `/usr/bin/chromium`, or `chromium` on PATH. Panics, saying what to
/// install, when it is in neither.
pub fn chromium() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed (neither /usr/bin/chromium nor chromium on PATH): \
                 install Debian's chromium package; ./dev test does"
            )
        })
}

/// Loads an HTML file in headless chromium and returns the DOM it serialized
/// (`--dump-dom`). Each call gets a fresh profile directory; chromium is killed, with
/// every process it started, if it takes longer than a minute.
pub fn dump_dom(html_file: &Path) -> String {
    let file = html_file
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", html_file.display()));
    let dir = tempfile::tempdir().expect("tempdir for chromium");
    let profile = dir.path().join("profile");
    let out_path = dir.path().join("dom.html");
    let err_path = dir.path().join("chromium.log");
    let out = std::fs::File::create(&out_path).expect("chromium output file");
    let err = std::fs::File::create(&err_path).expect("chromium log file");
    // Output goes to files, not pipes: a pipe that fills up, or that a child of chromium
    // keeps open, would hang the test.
    let mut child = Command::new(chromium())
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(file_url(&file))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group, so that a timeout kills the renderer and helpers too.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium: {e}; install Debian's chromium package; ./dev test does")
        });
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let deadline = Instant::now() + TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not load {} within {TIME_LIMIT:?}; log:\n{}",
                file.display(),
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = std::fs::read_to_string(&out_path).expect("read chromium's output");
    assert!(
        status.success() && !dom.trim().is_empty(),
        "chromium failed on {} ({status}); log:\n{}",
        file.display(),
        log()
    );
    dom
}

/// `file://` URL of an absolute path, with everything but unreserved characters and `/`
/// percent-encoded.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                url.push(char::from(*b))
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}
