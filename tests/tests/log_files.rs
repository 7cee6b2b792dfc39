//! Log files (`[log] file`): a node rotating by size under concurrent load
//! keeps at most `max_files` files, each within the size limit, loses no
//! line at rotation (lines in the files plus the lines of the files
//! retention deleted, `rhizome_log_lines_removed_total`, are every line it
//! logged), and writes no secret into any of them. A log file that cannot
//! be opened refuses the start naming `log.file`; `log.format` yields to the
//! environment like every key.

use std::path::Path;
use std::time::Duration;

use rhizome_tests::harness::cli::{refuses, start_up_refuses};
use rhizome_tests::harness::http::Client;
use rhizome_tests::harness::secrets::{self, ADMIN_TOKEN, CLIENT_KEY, STATIC_KEY};
use rhizome_tests::harness::{fixture, wait_for, Env, Node};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Requests sent: with [`PATH_PADDING`], about 8 MiB of access lines.
const REQUESTS: usize = 3600;
/// Clients sending at once.
const CLIENTS: usize = 8;
/// Bytes of path per request, so that few requests make many megabytes.
const PATH_PADDING: usize = 2000;
/// `log.rotation`.
const LIMIT: u64 = 1024 * 1024;

/// Every line of every log file in `dir`: (file name, size, lines).
fn log_files(dir: &Path) -> Vec<(String, u64, Vec<String>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("log dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A file renamed or deleted since the listing is read next time.
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let lines = text.lines().map(str::to_string).collect();
        files.push((name, text.len() as u64, lines));
    }
    files.sort();
    files
}

fn is_access(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .is_ok_and(|v| v["target"] == "rhizome::access" && v["message"] == "request")
}

async fn removed_lines(node: &Node) -> u64 {
    let v = node.metric("rhizome_log_lines_removed_total").await;
    v.expect("rhizome_log_lines_removed_total exported") as u64
}

async fn send_load(node: &Node) {
    let pad = "p".repeat(PATH_PADDING);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let url_base = node.url(&format!("/s/{pad}/c{c}/"));
        tasks.push(tokio::spawn(async move {
            let client = Client::new();
            let auth = format!("Bearer {CLIENT_KEY}");
            for i in 0..REQUESTS / CLIENTS {
                let resp = client
                    .get(&format!("{url_base}{i}"), &[("authorization", &auth)])
                    .await;
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
}

#[tokio::test]
async fn size_rotation_under_load_keeps_three_files_and_loses_no_line() {
    let env = Env::new("log_files");
    let mock = fixture::mock(&env, &[]).await;
    let dir = env.path("logs");
    std::fs::create_dir_all(&dir).expect("log dir");
    let file = dir.join("node.log");
    let ck = hex::encode(Sha256::digest(CLIENT_KEY.as_bytes()));
    let config = format!(
        r#"
[node]
admin_token = "{ADMIN_TOKEN}"

[log]
file = "{file}"
rotation = "1MiB"
max_files = 3

[[clients]]
name = "ci"
key_sha256 = "{ck}"

[[credentials]]
name = "static"
kind = "static"
token = "{STATIC_KEY}"
inject = {{ header = "api-key", value = "{{token}}" }}

[[upstreams]]
name = "mock"
targets = ["{base}"]

[[routes]]
name = "s"
path_prefix = "/s/"
strip_prefix = true
upstream = "mock"
credentials = ["static"]
"#,
        file = file.display(),
        base = mock.base(),
    );
    // Access lines, and the node's own lines of start-up (`listening`).
    let rust_log = ("RUST_LOG", "warn,rhizome_node=info,rhizome::access=info");
    let mut node = env.node_logging_to("n1", &config, &[rust_log], &file).await;
    node.wait_ready().await;
    // One request first: the lines of start-up and of first use (the token
    // obtained) are then in the file, and the load adds access lines only.
    let auth = format!("Bearer {CLIENT_KEY}");
    let resp = Client::new()
        .get(&node.url("/s/warm-up"), &[("authorization", &auth)])
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let before = wait_for(
        "the warm-up's access line",
        Duration::from_secs(10),
        || async {
            let files = log_files(&dir);
            let lines: Vec<&String> = files.iter().flat_map(|f| &f.2).collect();
            lines
                .iter()
                .any(|l| is_access(l))
                .then_some(lines.len() as u64)
        },
    )
    .await;
    assert!(
        std::fs::read_to_string(node.proc.log.as_path())
            .unwrap_or_default()
            .trim()
            .is_empty(),
        "stdout stays empty with a log file"
    );

    send_load(&node).await;

    // Every line reaches a file within the flush interval; wait for that.
    let want = before + REQUESTS as u64;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let (files, removed) = loop {
        let files = log_files(&dir);
        let in_files: u64 = files.iter().map(|f| f.2.len() as u64).sum();
        let removed = removed_lines(&node).await;
        if in_files + removed == want {
            break (files, removed);
        }
        assert!(
            std::time::Instant::now() < end,
            "after 30s: {in_files} lines in files + {removed} removed != {want} logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert!(files.len() <= 3, "more than max_files: {names:?}");
    assert!(names.contains(&"node.log"), "{names:?}");
    assert!(removed > 0, "about 8 MiB in 1 MiB files: some were removed");
    let longest = files
        .iter()
        .flat_map(|f| f.2.iter().map(|l| l.len() as u64 + 1))
        .max()
        .unwrap_or(0);
    for (name, size, lines) in &files {
        // Within the limit; only a line longer than it may stand alone.
        assert!(*size <= LIMIT || lines.len() == 1, "{name}: {size} bytes");
        for line in lines {
            // The lines before the load were in the first file, deleted since.
            assert!(is_access(line), "{name}: not an access line: {line}");
        }
    }
    let removed_files = node.metric("rhizome_log_files_removed_total").await;
    let dropped = node.metric("rhizome_log_lines_dropped_total").await;
    eprintln!(
        "log files: {names:?}, {removed} lines in {removed_files:?} removed files, \
         {dropped:?} dropped, {before} lines before the load, longest line {longest} bytes"
    );
    assert_eq!(dropped, Some(0.0));

    let found = secrets::scan_dir(&dir);
    assert!(found.is_empty(), "secrets in log files: {found:#?}");
    assert!(node.stop().await.success());
    env.assert_logs_clean();
}

#[tokio::test]
async fn a_log_file_that_cannot_be_opened_refuses_start_naming_the_setting() {
    let env = Env::new("log_files_refused");
    let missing = env.path("no-such-dir").join("node.log");
    let cfg = env.write(
        "refused.toml",
        format!("[log]\nfile = \"{}\"\n", missing.display()),
    );
    let printed = start_up_refuses(&cfg, &[]).await;
    assert!(printed.contains("log.file: cannot open"), "{printed}");
    // The same from the environment, which overrides the file.
    let plain = env.write("plain.toml", "");
    let from_env = missing.display().to_string();
    let printed = start_up_refuses(&plain, &[("RHIZOME__LOG__FILE", &from_env)]).await;
    assert!(printed.contains("log.file: cannot open"), "{printed}");
    // A rotation that is neither a period nor a size, with its path.
    std::fs::write(
        &cfg,
        "[log]\nfile = \"/tmp/node.log\"\nrotation = \"weekly\"\n",
    )
    .expect("write");
    let err = refuses("check-config", &cfg, &[]);
    assert!(err.contains("log.rotation: \"weekly\" is not"), "{err}");
}

#[tokio::test]
async fn the_environment_overrides_the_files_log_format() {
    let env = Env::new("log_files_format");
    // The file asks for pretty lines; RHIZOME__LOG__FORMAT wins, so the
    // harness finds its JSON `listening` lines on stdout.
    let config = "[log]\nformat = \"pretty\"\n";
    let mut node = env
        .node_with_env("n1", config, &[("RHIZOME__LOG__FORMAT", "json")])
        .await;
    node.wait_ready().await;
    assert!(node.stop().await.success());
    env.assert_logs_clean();
}
