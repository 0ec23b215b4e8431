//! Parsers and reply classification against real HAProxy captures of every tested version:
//! 2.6.12 (tests/fixtures/haproxy, copied from the project reference), 3.0 and 3.2
//! (tests/fixtures/haproxy/3.0, 3.2, made by tests/fixtures/haproxy/tools/capture.py).

mod support;

use haserf::haproxy::client::split_prompt_replies;
use haserf::haproxy::command::known_error;
use haserf::haproxy::stat::COLUMNS_2_6;
use haserf::haproxy::{
    AdminState, Command, CommandError, Health, Info, RowKind, ServerStatus, ServersState, StatTable,
};
use proptest::prelude::*;
use support::captures::{haproxy_captures, Captures};

/// The 2.6 capture `name`.
fn fixture(name: &str) -> String {
    haproxy_captures()[0].read(name)
}

/// `show stat` columns of each version: 2.6 has 128; 3.0 adds QUIC/H3 and session counters
/// after column 103, 3.2 two OCSP stapling counters.
fn stat_column_count(version: &str) -> Option<usize> {
    match version {
        "2.6" => Some(128),
        "3.0" => Some(205),
        "3.2" => Some(207),
        _ => None,
    }
}

#[test]
fn every_versions_initial_show_stat_keeps_the_2_6_columns_and_types_every_row() {
    for c in haproxy_captures() {
        let v = &c.version;
        let text = c.read("01-show-stat-initial.csv");
        let t = StatTable::parse(&text).unwrap_or_else(|e| panic!("{v}: {e}"));
        if let Some(n) = stat_column_count(v) {
            assert_eq!(t.columns().len(), n, "{v}");
        }
        // columns 1-103 stay in place; every 2.6 column is still there, by name
        assert_eq!(t.columns()[..103], COLUMNS_2_6[..103], "{v}");
        for name in COLUMNS_2_6 {
            assert!(t.column(name).is_some(), "{v}: no column {name}");
        }
        let kinds: Vec<_> = t.rows().map(|r| (r.proxy(), r.name(), r.kind())).collect();
        assert_eq!(kinds[0], ("fe_main", "FRONTEND", RowKind::Frontend), "{v}");
        assert_eq!(kinds[1], ("web", "web1", RowKind::Server), "{v}");
        assert!(kinds.contains(&("web", "BACKEND", RowKind::Backend)), "{v}");
        let web: Vec<_> = t.servers().filter(|r| r.proxy() == "web").collect();
        assert_eq!(web.len(), 10, "{v}");
        for r in &web {
            assert_eq!(r.status(), ServerStatus::Maint, "{v}");
            assert_eq!(r.addr(), Some("127.0.0.1:9"), "{v}");
            assert_eq!(r.check_status(), None, "{v}");
            assert_eq!(r.weight(), Some(1), "{v}");
        }
        let api: Vec<_> = t.servers().filter(|r| r.proxy() == "api").collect();
        assert_eq!(api.len(), 3, "{v}");
        assert!(
            api.iter()
                .all(|r| r.status() == ServerStatus::MaintResolution && r.addr().is_none()),
            "{v}"
        );
        let st1 = t.servers().find(|r| r.name() == "st1").unwrap();
        assert_eq!(st1.status(), ServerStatus::NoCheck, "{v}");
    }
}

#[test]
fn the_2_6_show_stat_header_is_exactly_the_2_6_column_list() {
    let t_text = fixture("01-show-stat-initial.csv");
    let t = StatTable::parse(&t_text).unwrap();
    assert_eq!(t.columns(), &COLUMNS_2_6[..]);
}

#[test]
fn every_versions_mixed_show_stat_parses_every_status_form() {
    for c in haproxy_captures() {
        mixed_show_stat_parses_every_status_form(&c);
    }
}

fn mixed_show_stat_parses_every_status_form(c: &Captures) {
    let v = &c.version;
    let text = c.read("20-show-stat-mixed-states.csv");
    let t = StatTable::parse(&text).unwrap_or_else(|e| panic!("{v}: {e}"));
    let st = |n: &str| {
        t.servers()
            .find(|r| r.name() == n)
            .unwrap_or_else(|| panic!("{v}: no {n}"))
    };
    assert_eq!(st("web1").status(), ServerStatus::Stable(Health::Up), "{v}");
    assert_eq!(st("web1").check_status(), Some("L7OK"), "{v}");
    assert_eq!(st("web1").addr(), Some("127.0.0.2:3000"), "{v}");
    assert_eq!(st("web1").scur(), Some(0), "{v}");
    assert_eq!(
        st("web2").status(),
        ServerStatus::Stable(Health::Drain),
        "{v}"
    );
    assert_eq!(st("web3").status(), ServerStatus::Maint, "{v}");
    assert_eq!(
        st("web4").status(),
        ServerStatus::Stable(Health::Down),
        "{v}"
    );
    assert_eq!(st("web4").check_status(), Some("L4CON"), "{v}");
    assert_eq!(
        st("web6").status(),
        ServerStatus::Stable(Health::Down),
        "{v}"
    );
    assert_eq!(st("web7").status(), ServerStatus::Stable(Health::Up), "{v}");
    assert_eq!(
        st("s404").status(),
        ServerStatus::Stable(Health::Nolb),
        "{v}"
    );
    assert_eq!(st("s404").check_status(), Some("L7OKC"), "{v}");
    assert_eq!(st("st1").status(), ServerStatus::NoCheck, "{v}");
    assert_eq!(st("api1").status(), ServerStatus::MaintResolution, "{v}");
    let be = t
        .rows()
        .find(|r| r.proxy() == "web" && r.kind() == RowKind::Backend)
        .unwrap();
    assert_eq!(be.status(), ServerStatus::Stable(Health::Up), "{v}");
    assert_eq!(be.weight(), Some(2), "{v}");
    assert_eq!(be.get("algo").as_deref(), Some("roundrobin"), "{v}");
}

#[test]
fn every_versions_filtered_show_stat_replies_parse() {
    for c in haproxy_captures() {
        let v = &c.version;
        let a = c.read("05-show-stat-filter-web-servers.csv");
        let t = StatTable::parse(&a).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(
            t.rows()
                .all(|r| r.kind() == RowKind::Server && r.proxy() == "web"),
            "{v}"
        );
        assert_eq!(t.len(), 10, "{v}");
        let b = c.read("05-show-stat-filter-all-backends.csv");
        let t = StatTable::parse(&b).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(t.rows().all(|r| r.kind() == RowKind::Backend), "{v}");
        assert_eq!(t.len(), 5, "{v}: web api web404 static stats");
    }
}

/// Builds a 2.8-style reply: ten new columns before `-`, plus an unknown 3.x column.
fn as_2_8_with_extra(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        let (prefix, body) = if i == 0 {
            ("# ", &line[2..])
        } else {
            ("", line)
        };
        let mut cells: Vec<&str> = body.split(',').collect();
        let dash = 103;
        let new: Vec<&str> = if i == 0 {
            vec![
                "srid",
                "sess_other",
                "h1sess",
                "h2sess",
                "h3sess",
                "req_other",
                "h1req",
                "h2req",
                "h3req",
                "proto",
            ]
        } else {
            vec!["", "0", "0", "0", "0", "0", "0", "0", "0", "tcp"]
        };
        if cells.len() > dash {
            for (k, v) in new.into_iter().enumerate() {
                cells.insert(dash + k, v);
            }
        }
        // trailing comma stays last: insert the unknown column before it
        let last = cells.len() - 1;
        cells.insert(last, if i == 0 { "future_col" } else { "42" });
        out.push_str(prefix);
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[test]
fn a_2_8_style_reply_with_inserted_and_unknown_columns_parses_by_header_name() {
    let text = as_2_8_with_extra(&fixture("20-show-stat-mixed-states.csv"));
    let t = StatTable::parse(&text).unwrap();
    assert_eq!(t.columns().len(), 128 + 11);
    assert_eq!(t.column("proto"), Some(112));
    let web1 = t.servers().find(|r| r.name() == "web1").unwrap();
    assert_eq!(web1.status(), ServerStatus::Stable(Health::Up));
    assert_eq!(web1.addr(), Some("127.0.0.2:3000"));
    assert_eq!(web1.get("future_col").as_deref(), Some("42"));
    assert_eq!(web1.get("proto").as_deref(), Some("tcp"));
}

#[test]
fn quoted_cells_are_unescaped() {
    let text = "# pxname,svname,status,type,\nb,\"s,1\",\"say \"\"hi\"\"\",2,\n\n";
    let t = StatTable::parse(text).unwrap();
    let r = t.row(0).unwrap();
    assert_eq!(r.name(), "s,1");
    assert_eq!(r.status_str(), "say \"hi\"");
}

#[test]
fn a_truncated_show_stat_names_line_and_column() {
    for c in haproxy_captures() {
        let text = c.read("20-show-stat-mixed-states.csv");
        let cut = &text[..text.len() / 2];
        let e = StatTable::parse(cut).unwrap_err();
        assert!(e.line > 1, "{}: {e}", c.version);
        assert!(e.to_string().contains("line"), "{}: {e}", c.version);
    }
    let short = "# pxname,svname,status,\nweb,web1\n";
    let e = StatTable::parse(short).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    let e = StatTable::parse("pxname,svname\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
}

#[test]
fn every_versions_show_servers_state_parses_admin_bits_ports_and_addresses() {
    for c in haproxy_captures() {
        let v = &c.version;
        // `show servers state web`: one backend
        let s = c.read("21-show-servers-state-mixed.txt");
        let st = ServersState::parse(&s).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(st.version, 1, "{v}");
        assert_eq!(st.columns.len(), 25, "{v}");
        assert_eq!(st.servers.len(), 10, "{v}");
        let w = |n: &str| st.servers.iter().find(|x| x.server == n).unwrap();
        assert_eq!(w("web1").addr, Some("127.0.0.2".parse().unwrap()), "{v}");
        assert_eq!(w("web1").port, Some(3000), "{v}");
        assert_eq!(w("web1").admin_state, 4, "{v}");
        assert!(!w("web1").in_maint(), "{v}");
        assert!(w("web2").draining(), "{v}");
        assert!(w("web3").in_maint(), "{v}");
        assert!(w("web5").in_maint(), "{v}");
        assert_eq!(w("web5").port, Some(9), "{v}");
        assert!(w("web5").has_check(), "{v}");
        assert!(w("web6").draining() && !w("web6").in_maint(), "{v}");
        // `show servers state`: every backend
        let init = c.read("02-show-servers-state-initial.txt");
        let st = ServersState::parse(&init).unwrap_or_else(|e| panic!("{v}: {e}"));
        for b in ["web", "api", "web404", "static"] {
            assert!(st.servers.iter().any(|x| x.backend == b), "{v}: no {b}");
        }
        let api1 = st.servers.iter().find(|x| x.server == "api1").unwrap();
        assert_eq!(api1.addr, None, "{v}");
        assert_eq!(api1.admin_state, 32, "{v}");
        assert!(api1.in_maint(), "{v}");
    }
}

#[test]
fn a_bad_servers_state_number_names_line_and_column() {
    for c in haproxy_captures() {
        let s = c.read("21-show-servers-state-mixed.txt").replacen(
            "3 web 1 web1 127.0.0.2 2 4",
            "3 web 1 web1 127.0.0.2 2 x",
            1,
        );
        let e = ServersState::parse(&s).unwrap_err();
        assert_eq!(e.line, 3, "{}", c.version);
        let col = "3 web 1 web1 127.0.0.2 2 ".len() + 1;
        assert_eq!(e.column, col, "{}: {e}", c.version);
    }
}

/// The value of `Key: value` in a `show info` reply, found without the parser.
fn info_line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn every_versions_show_info_gives_pid_uptime_start_time_version_and_stopping() {
    for c in haproxy_captures() {
        let v = &c.version;
        let s = c.read("03-show-info.txt");
        let i = Info::parse(&s).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(i.pid.to_string(), info_line(&s, "Pid"), "{v}");
        assert_eq!(i.uptime_sec.to_string(), info_line(&s, "Uptime_sec"), "{v}");
        assert_eq!(
            i.start_time_sec.map(|t| t.to_string()).as_deref(),
            Some(info_line(&s, "Start_time_sec")),
            "{v}"
        );
        assert!(!i.stopping, "{v}");
        assert_eq!(i.version, info_line(&s, "Version"), "{v}");
        assert!(
            i.version.starts_with(&format!("{v}.")),
            "{v}: {}",
            i.version
        );
        assert_eq!(i.get("node"), Some("vm"), "{v}");
    }
    let i26 = fixture("03-show-info.txt");
    let i = Info::parse(&i26).unwrap();
    assert_eq!((i.pid, i.uptime_sec), (6866, 7));
    assert_eq!(i.version, "2.6.12-1+deb12u4");
}

#[test]
fn a_show_info_line_without_a_colon_is_an_error_with_its_line() {
    let e = Info::parse("Name: HAProxy\nPid: 1\ngarbage\n\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 1));
}

/// `(socket, command line, reply text)` of every block of a transcript capture.
fn transcript(c: &Captures) -> Vec<(String, String, String)> {
    let t = c.read("10-command-transcript.txt");
    t.split("### socket=")
        .skip(1)
        .filter_map(|block| {
            let sock = block.lines().next()?.to_string();
            let cmd = block
                .lines()
                .find_map(|l| l.strip_prefix("$ "))?
                .to_string();
            let text = block
                .split("--- as text ---\n")
                .nth(1)
                .and_then(|b| b.split("=== end ===").next())
                .unwrap_or("")
                .trim_end()
                .to_string();
            Some((sock, cmd, text))
        })
        .collect()
}

/// Every `set` reply of every version's transcript (refusals, `nothing changed`, unknown
/// commands, permission errors…), classified as the reference says.
#[test]
fn every_set_reply_in_every_versions_transcript_is_classified_by_its_text() {
    for c in haproxy_captures() {
        let v = &c.version;
        let mut checked = 0;
        for (sock, cmd, text) in transcript(&c) {
            let (sock, cmd, text) = (sock.as_str(), cmd.as_str(), text.as_str());
            if cmd.contains(';') || !(cmd.starts_with("set ") || cmd.contains("able server")) {
                continue;
            }
            let probe = if cmd.contains(" addr") {
                Command::set_addr("b", "s", "127.0.0.1".parse().unwrap(), None).unwrap()
            } else {
                Command::set_state("b", "s", AdminState::Ready).unwrap()
            };
            let got = probe.classify(text);
            let expected: Result<(), fn(&CommandError) -> bool> = if sock != "admin.sock" {
                Err(|e| matches!(e, CommandError::PermissionDenied(_)))
            } else if cmd.starts_with("set bogus") {
                Err(|e| matches!(e, CommandError::UnknownCommand(_)))
            } else if cmd == "set server web/web1 bogus" {
                // `usage: set server …`
                Err(|e| matches!(e, CommandError::Other(_)))
            } else if text.starts_with("No such server") {
                Err(|e| matches!(e, CommandError::UnknownServer(_)))
            } else if text.starts_with("No such backend") {
                Err(|e| matches!(e, CommandError::UnknownBackend(_)))
            } else if cmd.ends_with("addr 999.1.1.1 port 3000")
                || cmd.contains("localhost")
                || cmd.ends_with(" addr")
                || cmd.starts_with("set server api/")
            {
                Err(|e| matches!(e, CommandError::InvalidAddress(_)))
            } else if cmd.ends_with("port abc") {
                Err(|e| matches!(e, CommandError::InvalidPort(_)))
            } else if cmd.contains(" state up")
                || cmd.ends_with(" state")
                || cmd.contains("health bogus")
            {
                Err(|e| matches!(e, CommandError::InvalidState(_)))
            } else if cmd.ends_with(" 300")
                || cmd.ends_with(" -1")
                || cmd == "set weight static/st1 50"
            {
                Err(|e| matches!(e, CommandError::InvalidWeight(_)))
            } else if cmd == "set server web1 state ready" {
                Err(|e| matches!(e, CommandError::Syntax(_)))
            } else if cmd.contains("agent up") {
                Err(|e| matches!(e, CommandError::Other(_)))
            } else {
                Ok(())
            };
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(pred), Err(e)) if pred(e) => {}
                (_, got) => panic!("{v}: {sock} `{cmd}` -> {text:?} classified as {got:?}"),
            }
            checked += 1;
        }
        assert!(checked >= 40, "{v}: only {checked} replies checked");
    }
}

/// An unchanged address: 2.6 says `no need to change the addr…`, 3.x `nothing changed`;
/// both are a success.
#[test]
fn an_unchanged_address_is_a_success_on_every_version() {
    for c in haproxy_captures() {
        let v = &c.version;
        let unchanged: Vec<String> = transcript(&c)
            .into_iter()
            .filter(|(_, _, text)| {
                text == "nothing changed"
                    || (text.starts_with("no need to change") && !text.contains("problem"))
            })
            .map(|(_, _, text)| text)
            .collect();
        assert!(
            !unchanged.is_empty(),
            "{v}: no unchanged-address reply captured"
        );
        let probe = Command::set_addr("b", "s", "127.0.0.2".parse().unwrap(), Some(3000)).unwrap();
        for text in unchanged {
            assert_eq!(probe.classify(&text), Ok(()), "{v}: {text:?}");
        }
    }
}

/// A Python `repr` of bytes (`b'…'` or `b"…"`), as the session captures print replies.
fn py_bytes(repr: &str) -> String {
    let inner = repr
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| repr.strip_prefix("b\"").and_then(|r| r.strip_suffix('"')))
        .unwrap_or_else(|| panic!("not a bytes repr: {repr}"));
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap() as char);
            }
            Some(other) => out.push(other),
            None => panic!("dangling backslash in {repr}"),
        }
    }
    out
}

/// The interactive (`prompt`) session capture: `(command, raw bytes HAProxy sent after it)`.
fn prompt_session(c: &Captures) -> Vec<(String, String)> {
    let text = c.read("16-prompt-mode-session.txt");
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let cmd = l.strip_prefix("$ ")?;
            Some((cmd.to_string(), py_bytes(lines.get(i + 1)?)))
        })
        .collect()
}

/// The client pipelines one command per line in prompt mode (never `;`-chained lines, whose
/// prompts differ: one per command on 2.6/3.0, one per line on 3.2) and splits the output
/// on the prompts: one reply per command on every version, each classified by its text.
#[test]
fn every_versions_prompt_session_splits_into_one_classified_reply_per_command() {
    for c in haproxy_captures() {
        let v = &c.version;
        let session: Vec<(String, String)> = prompt_session(&c)
            .into_iter()
            .filter(|(cmd, _)| !cmd.contains(';') && cmd != "quit")
            .collect();
        assert_eq!(session[0].0, "prompt", "{v}");
        let raw: String = session.iter().map(|(_, r)| r.as_str()).collect();
        let replies = split_prompt_replies(&raw);
        assert_eq!(replies.len(), session.len(), "{v}: {replies:?}");
        for ((cmd, _), reply) in session.iter().zip(&replies) {
            let addr = Command::set_addr("web", "web8", "127.0.0.2".parse().unwrap(), Some(3000));
            let state = Command::set_state("web", "web8", AdminState::Maint).unwrap();
            match cmd.as_str() {
                "prompt" => assert_eq!(reply, "", "{v}"),
                "show backend" => assert!(reply.starts_with("# name\nweb\n"), "{v}: {reply:?}"),
                "show cli level" => assert_eq!(reply, "admin\n", "{v}"),
                "set server web/web8 addr 127.0.0.2 port 3000" => {
                    assert_eq!(addr.unwrap().classify(reply), Ok(()), "{v}: {reply:?}")
                }
                "set server web/web8 state maint" | "set weight web/web8 1" => {
                    assert_eq!(state.classify(reply), Ok(()), "{v}: {reply:?}")
                }
                "set server web/nope state ready" => assert!(
                    matches!(state.classify(reply), Err(CommandError::UnknownServer(_))),
                    "{v}: {reply:?}"
                ),
                "bogus command" => assert!(
                    matches!(state.classify(reply), Err(CommandError::UnknownCommand(_))),
                    "{v}: {reply:?}"
                ),
                other => panic!("{v}: unexpected command {other} in the session capture"),
            }
        }
    }
}

#[test]
fn a_severity_prefix_does_not_hide_an_error() {
    let c = Command::set_addr("b", "s", "10.0.0.1".parse().unwrap(), Some(80)).unwrap();
    assert!(matches!(
        c.classify("[4]: Invalid addr '999.1.1.1' by 'stats socket command'"),
        Err(CommandError::InvalidAddress(_))
    ));
    assert!(c
        .classify("[4]: IP changed from '127.0.0.1' to '10.0.0.1' by 'stats socket command'")
        .is_ok());
    assert!(c.classify("nothing changed").is_ok());
    assert!(known_error("Permission denied").is_some());
}

#[test]
fn out_of_range_values_are_refused_before_sending() {
    assert!(Command::set_addr("web", "web1", "10.0.0.1".parse().unwrap(), Some(0)).is_err());
    assert!(Command::set_weight("web", "web1", 257).is_err());
    assert!(Command::set_state("web;quit", "web1", AdminState::Ready).is_err());
    assert!(Command::set_state("web", "web 1", AdminState::Ready).is_err());
    assert_eq!(
        Command::set_addr("web", "web1", "::1".parse().unwrap(), Some(8080))
            .unwrap()
            .to_string(),
        "set server web/web1 addr ::1 port 8080"
    );
}

proptest! {
    #[test]
    fn the_parsers_never_panic_on_arbitrary_input(s in ".{0,400}") {
        let _ = StatTable::parse(&s);
        let _ = ServersState::parse(&s);
        let _ = Info::parse(&s);
        let _ = ServerStatus::parse(&s);
    }

    #[test]
    fn the_parsers_never_panic_on_mangled_real_replies(cut in 0usize..12000, junk in "[,\"\n# a-z0-9]{0,20}") {
        for (c, f) in haproxy_captures().iter().flat_map(|c| {
            ["20-show-stat-mixed-states.csv", "21-show-servers-state-mixed.txt", "03-show-info.txt"]
                .map(|f| (c.clone(), f))
        }) {
            let text = c.read(f);
            let mut cut = cut.min(text.len());
            while !text.is_char_boundary(cut) { cut -= 1; }
            let s = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
            let _ = StatTable::parse(&s);
            let _ = ServersState::parse(&s);
            let _ = Info::parse(&s);
        }
    }
}
