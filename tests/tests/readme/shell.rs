//! The README's shell blocks as the test sees them: parsing the marked
//! ```` ```sh ```` blocks into commands, running a block as one `bash` script
//! (in its own process group, every command followed by a marker carrying its
//! exit status), and checking that a process group left nothing running.
//! `docs/readme-test.md` describes the conventions.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rhizome_tests::harness::wait_for;

/// The repository root.
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Printed after every command, with its index and exit status.
const STEP_MARK: &str = "@@readme-step";

/// A marked ```` ```sh ```` block of the README.
#[derive(Debug, Clone)]
pub struct Block {
    /// The marker's name (`walkthrough`, `redis`, …; `skip` for unrun blocks).
    pub name: String,
    /// Its commands, continuation lines kept as written.
    pub commands: Vec<String>,
}

/// The README's text.
pub fn readme() -> String {
    std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("read README.md")
}

/// Every ```` ```sh ```` block of `text`; panics on a block without a
/// `<!-- readme-test: NAME -->` marker on the line just above it.
pub fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let name = i
            .checked_sub(1)
            .and_then(|p| marker(lines[p]))
            .unwrap_or_else(|| {
                panic!(
                    "README.md line {}: a ```sh block without a `<!-- readme-test: NAME -->` \
                     marker on the line above (see docs/readme-test.md)",
                    i + 1
                )
            });
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("README.md line {}: unterminated block", i + 1));
        out.push(Block {
            name,
            commands: commands(&lines[i + 1..end]),
        });
        i = end + 1;
    }
    out
}

/// The one block called `name`.
pub fn block(all: &[Block], name: &str) -> Block {
    let mut found = all.iter().filter(|b| b.name == name);
    let b = found
        .next()
        .unwrap_or_else(|| panic!("README.md has no block marked `{name}`"));
    assert!(
        found.next().is_none(),
        "README.md has several blocks marked `{name}`"
    );
    b.clone()
}

/// The name in `<!-- readme-test: NAME (anything) -->`.
fn marker(line: &str) -> Option<String> {
    let inner = line
        .trim()
        .strip_prefix("<!-- readme-test:")?
        .strip_suffix("-->")?;
    inner.split_whitespace().next().map(str::to_owned)
}

/// Commands of a block: blank lines and `#` comments dropped, a line ending
/// in `\` joined with the next.
fn commands(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        let line = line.trim_end();
        if current.is_none() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        let cmd = current.get_or_insert_with(String::new);
        if !cmd.is_empty() {
            cmd.push('\n');
        }
        cmd.push_str(line);
        if !line.ends_with('\\') {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// Replaces every occurrence of each `from` with its `to`, in one pass (a
/// replacement is never rewritten by a later pair).
pub fn substitute(text: &str, pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (from, to) in pairs {
            if let Some(after) = rest.strip_prefix(from.as_str()) {
                out.push_str(to);
                rest = after;
                continue 'scan;
            }
        }
        let ch = rest.chars().next().expect("non-empty");
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// One command's outcome.
#[derive(Debug)]
pub struct Step {
    /// The command as run.
    pub command: String,
    /// Its exit status.
    pub status: i32,
    /// What it printed (stdout and stderr, in order), trimmed.
    pub out: String,
}

/// Runs `commands` as one `bash` script in `dir`, in a process group of its
/// own, and returns each command's outcome. Panics (after killing the group)
/// when the script does not end within `deadline`, and when it leaves any
/// process running.
pub async fn run(dir: &Path, name: &str, commands: &[String], deadline: Duration) -> Vec<Step> {
    let mut script = String::new();
    for (i, c) in commands.iter().enumerate() {
        script.push_str(c);
        script.push_str(&format!("\nprintf '\\n{STEP_MARK} {i} %d\\n' \"$?\"\n"));
    }
    let script_path = dir.join(format!("{name}.sh"));
    std::fs::write(&script_path, &script).expect("write script");
    let out_path = dir.join(format!("{name}.out"));
    let mut child = spawn_group(
        Path::new("bash"),
        &[script_path.display().to_string()],
        &[],
        dir,
        &out_path,
    );
    let group = Group(child.id().expect("pid"));
    let status = tokio::time::timeout(deadline, child.wait()).await;
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Ok(Ok(_)) => {}
        _ => panic!("`{name}` did not finish within {deadline:?}; output so far:\n{output}"),
    }
    group.assert_gone(name).await;
    let steps = parse_steps(&output, commands);
    assert_eq!(
        steps.len(),
        commands.len(),
        "`{name}` stopped after {} of {} commands; output:\n{output}",
        steps.len(),
        commands.len()
    );
    steps
}

fn parse_steps(output: &str, commands: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut text = String::new();
    for line in output.lines() {
        let mark = line
            .strip_prefix(STEP_MARK)
            .and_then(|r| r.trim().split_once(' '))
            .and_then(|(i, s)| Some((i.parse::<usize>().ok()?, s.parse::<i32>().ok()?)));
        match mark {
            Some((i, status)) if i == steps.len() && i < commands.len() => {
                steps.push(Step {
                    command: commands[i].clone(),
                    status,
                    out: std::mem::take(&mut text).trim().to_owned(),
                });
            }
            _ => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    steps
}

/// Spawns `program` in a new process group with stdout and stderr appended
/// to `log`.
pub fn spawn_group(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    cwd: &Path,
    log: &Path,
) -> tokio::process::Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DEMO_CLIENT_SECRET")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

/// A process group; whatever is left of it is killed when this is dropped.
#[derive(Debug)]
pub struct Group(pub u32);

impl Group {
    /// Live (non-zombie) members, as `pid name`.
    pub fn members(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                // `pid (comm) state ppid pgrp …`; comm may hold spaces.
                let (head, tail) = stat.rsplit_once(')')?;
                let fields: Vec<&str> = tail.split_whitespace().collect();
                let (state, pgrp) = (*fields.first()?, fields.get(2)?.parse::<u32>().ok()?);
                let comm = head.split_once('(')?.1;
                (pgrp == self.0 && state != "Z").then(|| format!("{pid} {comm}"))
            })
            .collect()
    }

    /// Waits (with a deadline) until no member is left.
    pub async fn assert_gone(&self, what: &str) {
        wait_for(
            &format!("every process started by `{what}` to exit"),
            Duration::from_secs(20),
            || async {
                let left = self.members();
                left.is_empty().then_some(())
            },
        )
        .await;
    }

    /// Sends `sig` to the group's leader only (as `kill -SIG pid`).
    pub fn signal_leader(&self, sig: &str) {
        kill(&format!("-{sig}"), &self.0.to_string());
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.members().is_empty() {
            kill("-KILL", &format!("-{}", self.0));
        }
    }
}

fn kill(sig: &str, target: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, "--", target])
        .status();
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn commands_drop_comments_and_join_continuations() {
        let lines = [
            "# comment",
            "",
            "K=1",
            "curl a \\",
            "  -d x",
            "  # indented comment",
            "echo b",
        ];
        assert_eq!(commands(&lines), vec!["K=1", "curl a \\\n  -d x", "echo b"]);
    }

    #[test]
    fn substitution_is_one_pass() {
        let pairs = [
            (":8080".to_string(), ":9090".to_string()),
            (":9090".to_string(), ":1".to_string()),
        ];
        assert_eq!(substitute("a:8080 b:9090", &pairs), "a:9090 b:1");
    }

    #[test]
    fn steps_split_on_markers() {
        let cmds = vec!["a".to_string(), "b".to_string()];
        let out = format!("x\n\n{STEP_MARK} 0 0\n\n{STEP_MARK} 1 3\n");
        let steps = parse_steps(&out, &cmds);
        assert_eq!(steps.len(), 2);
        assert_eq!((steps[0].out.as_str(), steps[0].status), ("x", 0));
        assert_eq!((steps[1].out.as_str(), steps[1].status), ("", 3));
    }
}
