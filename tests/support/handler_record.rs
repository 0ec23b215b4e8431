//! A handler script that records what serf's handler contract hands it, for comparing
//! `serf agent` and `haserf agent` (and checking what a restarted agent replays).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Records every event: `<dir>/<self>/<nanos>.<event>.{env,stdin}`; answers queries with
/// `hello from <self>: <payload>`.
pub fn recorder(dir: &Path) -> PathBuf {
    let script = dir.join("record.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
d="{}/$SERF_SELF_NAME"; mkdir -p "$d"; n=$(date +%s%N)
env | grep '^SERF_' | sort > "$d/$n.$SERF_EVENT.env.tmp"
cat > "$d/$n.$SERF_EVENT.stdin"
mv "$d/$n.$SERF_EVENT.env.tmp" "$d/$n.$SERF_EVENT.env"
if [ "$SERF_EVENT" = query ]; then printf 'hello from %s: %s' "$SERF_SELF_NAME" "$(cat "$d/$n.$SERF_EVENT.stdin")"; fi
"#,
            dir.join("out").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// One recorded run: (event, stdin, env without SERF_SELF_NAME).
pub type Run = (String, Vec<u8>, BTreeMap<String, String>);

pub fn runs(dir: &Path, node: &str) -> Vec<Run> {
    let d = dir.join("out").join(node);
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".env"));
    names.sort();
    names
        .iter()
        .map(|n| {
            let base = n.trim_end_matches(".env");
            let event = base.split_once('.').unwrap().1.to_string();
            let stdin = std::fs::read(d.join(format!("{base}.stdin"))).unwrap_or_default();
            let env: BTreeMap<String, String> = std::fs::read_to_string(d.join(n))
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                env.get("SERF_SELF_NAME").map(String::as_str),
                Some(node),
                "{env:?}"
            );
            let env = env
                .into_iter()
                .filter(|(k, _)| k != "SERF_SELF_NAME")
                .collect();
            (event, stdin, env)
        })
        .collect()
}

/// The runs of `node` that mention `needle` in their stdin or are of `event` type user/query.
pub fn about(dir: &Path, node: &str, event: &str, needle: &str) -> Vec<Run> {
    runs(dir, node)
        .into_iter()
        .filter(|(e, stdin, _)| e == event && String::from_utf8_lossy(stdin).contains(needle))
        .collect()
}
