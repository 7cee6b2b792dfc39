//! Unit tests of configuration loading: layer precedence and validation.

use super::*;

const THREE: &str =
    "[peers]\n1 = \"http://c1:7070\"\n2 = \"http://c2:7070/\"\n3 = \"http://c3:7070\"\n";

fn errors(text: &str) -> Vec<String> {
    match from_toml(text) {
        Err(LoadError::Invalid(errs)) => errs.iter().map(ToString::to_string).collect(),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

fn has(errs: &[String], prefix: &str) -> bool {
    errs.iter().any(|e| e.starts_with(prefix))
}

#[test]
fn a_minimal_file_gets_the_defaults() {
    let cfg = from_toml(&format!("id = 2\n{THREE}")).expect("valid");
    assert_eq!(cfg.id, 2);
    assert_eq!(cfg.listen, "0.0.0.0:7070".parse().expect("addr"));
    assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/rhizome"));
    assert_eq!(cfg.own_url(), "http://c2:7070", "trailing slash dropped");
    assert_eq!(cfg.raft, RaftSettings::default());
    let raft = cfg.openraft().expect("openraft accepts the defaults");
    assert_eq!(raft.heartbeat_interval, 100);
    assert_eq!(
        (raft.election_timeout_min, raft.election_timeout_max),
        (300, 600)
    );
    assert!(matches!(
        raft.snapshot_policy,
        openraft::SnapshotPolicy::LogsSinceLast(1000)
    ));
}

#[test]
fn layers_win_in_order_file_env_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("coord.toml");
    std::fs::write(
        &file,
        format!("id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\n{THREE}[raft]\nheartbeat_interval = \"100ms\"\nsnapshot_after = 5\n"),
    )
    .expect("write");
    // The only test touching the process environment (its own prefix).
    std::env::set_var("RHIZOME_COORD__LISTEN", "127.0.0.1:2");
    std::env::set_var("RHIZOME_COORD__DATA_DIR", "/from/env");
    std::env::set_var("RHIZOME_COORD__RAFT__SNAPSHOT_AFTER", "7");
    std::env::set_var("RHIZOME_COORD__PEERS__3", "http://env3:7070");
    let flags = Overrides {
        id: Some(3),
        listen: Some("127.0.0.1:3".into()),
        ..Overrides::default()
    };
    let cfg = load(Some(&file), &flags).expect("valid");
    assert_eq!(cfg.id, 3, "flag over file");
    assert_eq!(cfg.listen.port(), 3, "flag over env over file");
    assert_eq!(cfg.data_dir, PathBuf::from("/from/env"), "env over file");
    assert_eq!(cfg.raft.snapshot_after, 7, "env reaches nested keys");
    assert_eq!(cfg.raft.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(cfg.peers[&1], "http://c1:7070", "env merges the peer table");
    assert_eq!(cfg.peers[&3], "http://env3:7070");
    let only_one = Overrides {
        id: Some(1),
        peers: Some(BTreeMap::from([("1".into(), "http://solo:7070".into())])),
        ..Overrides::default()
    };
    let solo = load(Some(&file), &only_one).expect("valid");
    assert_eq!(solo.peers.len(), 1, "--peers replaces the table");
    std::env::set_var("RHIZOME_COORD__RAFT__HEARTBEAT_INTERVAL", "soon");
    let bad = load(Some(&file), &flags);
    for key in [
        "RHIZOME_COORD__LISTEN",
        "RHIZOME_COORD__DATA_DIR",
        "RHIZOME_COORD__RAFT__SNAPSHOT_AFTER",
        "RHIZOME_COORD__PEERS__3",
        "RHIZOME_COORD__RAFT__HEARTBEAT_INTERVAL",
    ] {
        std::env::remove_var(key);
    }
    match bad {
        Err(LoadError::Invalid(errs)) => {
            assert_eq!(errs[0].path, "raft.heartbeat_interval", "{errs:?}")
        }
        other => panic!("expected a type error, got {other:?}"),
    }
}

#[test]
fn unknown_keys_and_type_errors_name_their_path_all_at_once() {
    let errs = errors(&format!(
        "id = 1\nlisten = 5\nlistn = \"x\"\n{THREE}[raft]\nheartbeat = \"1s\"\nelection_timeout_min = \"soon\"\n"
    ));
    assert!(has(&errs, "listen: "), "{errs:?}");
    assert!(has(&errs, "listn: unknown field"), "{errs:?}");
    assert!(has(&errs, "raft.heartbeat: unknown field"), "{errs:?}");
    assert!(has(&errs, "raft.election_timeout_min: "), "{errs:?}");
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn peers_are_checked_and_named() {
    let https =
        errors("id = 1\n[peers]\n1 = \"http://a:1\"\n2 = \"https://b:1\"\n3 = \"http://c:1\"\n");
    assert!(
        has(&https, "peers.2: \"https://b:1\" must start with http://"),
        "{https:?}"
    );
    let two = errors("id = 1\n[peers]\n1 = \"http://a:1\"\n2 = \"http://b:1\"\n");
    assert!(has(&two, "peers: 2 replicas given"), "{two:?}");
    let missing = errors(&format!("id = 4\n{THREE}"));
    assert!(
        has(&missing, "peers: does not contain this replica's id 4"),
        "{missing:?}"
    );
    let odd = errors(
        "id = 1\n[peers]\n1 = \"http://a:1/x\"\nx = \"http://b:1\"\n3 = \"http://u:p@c:1\"\n",
    );
    assert!(has(&odd, "peers.1: must be a base URL"), "{odd:?}");
    assert!(
        has(&odd, "peers.x: a replica id must be an integer"),
        "{odd:?}"
    );
    assert!(
        has(&odd, "peers.3: must not carry user:password"),
        "{odd:?}"
    );
    assert!(
        odd.iter().all(|e| !e.contains("u:p@")),
        "credentials never echoed: {odd:?}"
    );
    let dup =
        errors("id = 1\n[peers]\n1 = \"http://a:1\"\n2 = \"http://a:1/\"\n3 = \"http://c:1\"\n");
    assert!(has(&dup, "peers.2: same URL as replica 1"), "{dup:?}");
    assert!(has(
        &errors("[peers]\n1 = \"http://a:1\"\n"),
        "id: required"
    ));
    assert!(has(&errors("id = 1\n"), "peers: required"));
}

#[test]
fn raft_timings_are_checked() {
    let errs = errors(&format!(
        "id = 1\n{THREE}[raft]\nheartbeat_interval = \"5ms\"\nelection_timeout_min = \"2s\"\nelection_timeout_max = \"2s\"\nsnapshot_after = 0\n"
    ));
    assert!(
        has(&errs, "raft.heartbeat_interval: must be at least 10ms"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "raft.election_timeout_max: must be greater"),
        "{errs:?}"
    );
    assert!(
        has(&errs, "raft.snapshot_after: must be at least 1"),
        "{errs:?}"
    );
    let slow = errors(&format!(
        "id = 1\n{THREE}[raft]\nheartbeat_interval = \"1s\"\nelection_timeout_min = \"1500ms\"\n"
    ));
    assert!(
        has(&slow, "raft.election_timeout_min: must be at least twice"),
        "{slow:?}"
    );
}
