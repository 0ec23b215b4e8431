//! The map file: what HAProxy reads at start-up and at every reload. The agent rewrites it
//! whenever the desired entries change, atomically (a temporary file in the same
//! directory, fsync, rename over the old file, fsync of the directory), so HAProxy never
//! reads half a file and a crash leaves either the old or the new one.

use std::io::Write as _;
use std::path::Path;

use super::content::Entries;
use super::MapKind;

/// The file text: a comment naming the kind, then `key value` lines in key order (the
/// format of HAProxy's pattern files; values may hold spaces).
pub fn render(kind: &MapKind, entries: &Entries) -> String {
    let mut out = format!("# haserf map {kind}: written by the haserf agent, do not edit\n");
    for (k, v) in entries {
        out.push_str(k);
        out.push(' ');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Replaces `path` with `text` atomically. The new file keeps the old file's permissions
/// (0644 when there was none, so HAProxy's user can read it).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a map path names a file"))?;
    let tmp = dir.join(format!(
        ".{}.haserf-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_one_sorted_line_per_entry_after_a_comment() {
        let e: Entries = [("web/web2", "b c"), ("web/web1", "a")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = render(&MapKind::ServedBy, &e);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# haserf map served-by"));
        assert_eq!(&lines[1..], ["web/web1 a", "web/web2 b c"]);
    }

    #[test]
    fn a_rewrite_replaces_the_file_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.map");
        write_atomic(&p, "a 1\n").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b 2\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        assert!(write_atomic(Path::new("/nonexistent-haserf-dir/m.map"), "x").is_err());
    }
}
