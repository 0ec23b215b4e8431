//! Real HAProxy runtime-API replies, one set per tested HAProxy version
//! (tests/fixtures/haproxy): 2.6 at the top (copied from the project reference), every later
//! version in its own `X.Y/` directory with the same file names, made by
//! `tests/fixtures/haproxy/tools/capture.py`. Parser tests run over all of them.

use std::path::{Path, PathBuf};

/// The HAProxy versions whose captures must exist: the versions `scripts/versions.sh`
/// installs and `scripts/test.sh` tests.
pub const TESTED_HAPROXY_VERSIONS: [&str; 3] = ["2.6", "3.0", "3.2"];

/// One HAProxy version's captures.
#[derive(Clone, Debug)]
pub struct Captures {
    /// `major.minor`, e.g. `"3.2"`.
    pub version: String,
    /// The directory holding the files.
    pub dir: PathBuf,
}

impl Captures {
    /// The contents of capture `name` (e.g. `"20-show-stat-mixed-states.csv"`); panics,
    /// naming the version, when it is missing.
    #[track_caller]
    pub fn read(&self, name: &str) -> String {
        let p = self.dir.join(name);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("HAProxy {} capture {}: {e}", self.version, p.display()))
    }
}

/// The fixture directory, tests/fixtures/haproxy.
pub fn haproxy_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy")
}

/// Every version's captures, oldest first: 2.6 (the top directory) and each `X.Y/`
/// subdirectory. Panics unless every version in [`TESTED_HAPROXY_VERSIONS`] is there.
#[track_caller]
pub fn haproxy_captures() -> Vec<Captures> {
    let top = haproxy_fixture_dir();
    let mut out = vec![Captures {
        version: "2.6".into(),
        dir: top.clone(),
    }];
    let mut sub: Vec<Captures> = std::fs::read_dir(&top)
        .expect("tests/fixtures/haproxy")
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (major, minor) = name.split_once('.')?;
            major.parse::<u32>().ok()?;
            minor.parse::<u32>().ok()?;
            Some(Captures {
                version: name,
                dir: e.path(),
            })
        })
        .collect();
    sub.sort_by_key(|c| {
        let (a, b) = c.version.split_once('.').unwrap();
        (a.parse::<u32>().unwrap(), b.parse::<u32>().unwrap())
    });
    out.extend(sub);
    for v in TESTED_HAPROXY_VERSIONS {
        assert!(
            out.iter().any(|c| c.version == v),
            "no captures for HAProxy {v} in {}: make them with \
             tests/fixtures/haproxy/tools/capture.py",
            top.display()
        );
    }
    out
}
