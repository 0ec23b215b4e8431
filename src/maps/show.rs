//! Parser of `show map <file>`: one entry per line, `<pointer> <key> <value>`, e.g.
//! `0x55a77e538430 web/web1 alpha` (HAProxy 2.6–3.x). The value is everything after the
//! key and one space (values may hold spaces); an entry may appear several times when
//! `add map` was given an existing key (lookups use the first).

/// The reply HAProxy gives for a map no configuration line uses.
pub const UNKNOWN_MAP: &str = "Unknown map identifier";

/// Why a `show map` reply was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShowMapError {
    /// HAProxy does not know the map: no `map(<file>)` in haproxy.cfg names this file.
    #[error(
        "HAProxy has no map {0:?}: declare it in haproxy.cfg with map({0}) (the exact same path)"
    )]
    Undeclared(String),
    /// A line is not `<pointer> <key> [<value>]`.
    #[error("malformed `show map` reply at line {line}: {text:?}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line (cut to 80 bytes).
        text: String,
    },
}

/// Parses the reply to `show map <file>` into `(key, value)` pairs in HAProxy's order.
pub fn parse_show_map(file: &str, reply: &str) -> Result<Vec<(String, String)>, ShowMapError> {
    if reply.trim_start().starts_with(UNKNOWN_MAP) {
        return Err(ShowMapError::Undeclared(file.to_string()));
    }
    let mut out = Vec::new();
    for (i, line) in reply.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || ShowMapError::Malformed {
            line: i + 1,
            text: line.chars().take(80).collect(),
        };
        let (ptr, rest) = line.split_once(' ').ok_or_else(bad)?;
        if !ptr.starts_with("0x") && !ptr.starts_with("(nil)") {
            return Err(bad());
        }
        let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
        if key.is_empty() {
            return Err(bad());
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_with_spaces_in_values_and_duplicates_kept() {
        let reply = "0x55a77e538430 web/web1 alpha\n0x7f751c047360 web/web3 two words\n\
                     0x7f751c046d90 web/web3 again\n\n";
        let e = parse_show_map("/m.map", reply).unwrap();
        assert_eq!(
            e,
            [
                ("web/web1".into(), "alpha".into()),
                ("web/web3".into(), "two words".into()),
                ("web/web3".into(), "again".into()),
            ]
        );
    }

    #[test]
    fn an_empty_map_is_an_empty_list() {
        assert!(parse_show_map("/m.map", "\n").unwrap().is_empty());
        assert!(parse_show_map("/m.map", "").unwrap().is_empty());
    }

    #[test]
    fn an_undeclared_map_says_how_to_declare_it() {
        let e = parse_show_map(
            "/m.map",
            "Unknown map identifier. Please use #<id> or <file>.\n",
        )
        .unwrap_err();
        assert!(matches!(e, ShowMapError::Undeclared(_)));
        assert!(e.to_string().contains("map(/m.map)"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let e = parse_show_map("/m.map", "0x1 a b\nPermission denied\n").unwrap_err();
        assert!(matches!(e, ShowMapError::Malformed { line: 2, .. }), "{e}");
    }
}
