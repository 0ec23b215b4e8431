//! Parsers and reply classification against real HAProxy 2.6.12 captures
//! (tests/fixtures/haproxy, copied from the project reference).

use haserf::haproxy::command::known_error;
use haserf::haproxy::{
    AdminState, Command, CommandError, Health, Info, RowKind, ServerStatus, ServersState, StatTable,
};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/haproxy/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn the_initial_show_stat_names_every_2_6_column_and_types_every_row() {
    let text = fixture("01-show-stat-initial.csv");
    let t = StatTable::parse(&text).unwrap();
    assert_eq!(t.columns().len(), 128);
    assert_eq!(t.columns(), &haserf::haproxy::stat::COLUMNS_2_6[..]);
    let kinds: Vec<_> = t.rows().map(|r| (r.proxy(), r.name(), r.kind())).collect();
    assert_eq!(kinds[0], ("fe_main", "FRONTEND", RowKind::Frontend));
    assert_eq!(kinds[1], ("web", "web1", RowKind::Server));
    assert!(kinds.contains(&("web", "BACKEND", RowKind::Backend)));
    let web: Vec<_> = t.servers().filter(|r| r.proxy() == "web").collect();
    assert_eq!(web.len(), 10);
    for r in &web {
        assert_eq!(r.status(), ServerStatus::Maint);
        assert_eq!(r.addr(), Some("127.0.0.1:9"));
        assert_eq!(r.check_status(), None);
        assert_eq!(r.weight(), Some(1));
    }
    let api: Vec<_> = t.servers().filter(|r| r.proxy() == "api").collect();
    assert!(api
        .iter()
        .all(|r| r.status() == ServerStatus::MaintResolution && r.addr().is_none()));
    let st1 = t.servers().find(|r| r.name() == "st1").unwrap();
    assert_eq!(st1.status(), ServerStatus::NoCheck);
}

#[test]
fn the_mixed_show_stat_parses_every_status_form() {
    let text = fixture("20-show-stat-mixed-states.csv");
    let t = StatTable::parse(&text).unwrap();
    let st = |n: &str| t.servers().find(|r| r.name() == n).unwrap();
    assert_eq!(st("web1").status(), ServerStatus::Stable(Health::Up));
    assert_eq!(st("web1").check_status(), Some("L7OK"));
    assert_eq!(st("web1").addr(), Some("127.0.0.2:3000"));
    assert_eq!(st("web1").scur(), Some(0));
    assert_eq!(st("web2").status(), ServerStatus::Stable(Health::Drain));
    assert_eq!(st("web3").status(), ServerStatus::Maint);
    assert_eq!(st("web4").status(), ServerStatus::Stable(Health::Down));
    assert_eq!(st("web4").check_status(), Some("L4CON"));
    assert_eq!(st("s404").status(), ServerStatus::Stable(Health::Nolb));
    assert_eq!(st("s404").check_status(), Some("L7OKC"));
    assert_eq!(st("st1").status(), ServerStatus::NoCheck);
    assert_eq!(st("api1").status(), ServerStatus::MaintResolution);
    let be = t
        .rows()
        .find(|r| r.proxy() == "web" && r.kind() == RowKind::Backend)
        .unwrap();
    assert_eq!(be.status(), ServerStatus::Stable(Health::Up));
    assert_eq!(be.weight(), Some(2));
    assert_eq!(be.get("algo").as_deref(), Some("roundrobin"));
}

#[test]
fn filtered_show_stat_replies_parse() {
    let a = fixture("05-show-stat-filter-web-servers.csv");
    let t = StatTable::parse(&a).unwrap();
    assert!(t
        .rows()
        .all(|r| r.kind() == RowKind::Server && r.proxy() == "web"));
    assert_eq!(t.len(), 10);
    let b = fixture("05-show-stat-filter-all-backends.csv");
    let t = StatTable::parse(&b).unwrap();
    assert!(t.rows().all(|r| r.kind() == RowKind::Backend));
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
    let text = fixture("20-show-stat-mixed-states.csv");
    let cut = &text[..text.len() / 2];
    let e = StatTable::parse(cut).unwrap_err();
    assert!(e.line > 1, "{e}");
    assert!(e.to_string().contains("line"), "{e}");
    let short = "# pxname,svname,status,\nweb,web1\n";
    let e = StatTable::parse(short).unwrap_err();
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    let e = StatTable::parse("pxname,svname\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
}

#[test]
fn show_servers_state_parses_admin_bits_ports_and_addresses() {
    let s = fixture("21-show-servers-state-mixed.txt");
    let st = ServersState::parse(&s).unwrap();
    assert_eq!(st.version, 1);
    assert_eq!(st.columns.len(), 25);
    assert_eq!(st.servers.len(), 10);
    let w = |n: &str| st.servers.iter().find(|x| x.server == n).unwrap();
    assert_eq!(w("web1").addr, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(w("web1").port, Some(3000));
    assert_eq!(w("web1").admin_state, 4);
    assert!(!w("web1").in_maint());
    assert!(w("web2").draining());
    assert!(w("web3").in_maint());
    assert!(w("web5").in_maint());
    assert_eq!(w("web5").port, Some(9));
    assert!(w("web5").has_check());
    let init = fixture("02-show-servers-state-initial.txt");
    let st = ServersState::parse(&init).unwrap();
    let api1 = st.servers.iter().find(|x| x.server == "api1").unwrap();
    assert_eq!(api1.addr, None);
    assert_eq!(api1.admin_state, 32);
    assert!(api1.in_maint());
}

#[test]
fn a_bad_servers_state_number_names_line_and_column() {
    let s = fixture("21-show-servers-state-mixed.txt").replacen(
        "3 web 1 web1 127.0.0.2 2 4",
        "3 web 1 web1 127.0.0.2 2 x",
        1,
    );
    let e = ServersState::parse(&s).unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.column, "3 web 1 web1 127.0.0.2 2 ".len() + 1, "{e}");
}

#[test]
fn show_info_gives_pid_uptime_start_time_and_stopping() {
    let s = fixture("03-show-info.txt");
    let i = Info::parse(&s).unwrap();
    assert_eq!(i.pid, 6866);
    assert_eq!(i.uptime_sec, 7);
    assert!(i.start_time_sec.is_some());
    assert!(!i.stopping);
    assert_eq!(i.version, "2.6.12-1+deb12u4");
    assert_eq!(i.get("node"), Some("vm"));
}

#[test]
fn a_show_info_line_without_a_colon_is_an_error_with_its_line() {
    let e = Info::parse("Name: HAProxy\nPid: 1\ngarbage\n\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 1));
}

/// Every `set` reply of the 2.6 transcript, classified as the reference says.
#[test]
fn every_set_reply_in_the_2_6_transcript_is_classified_by_its_text() {
    let t = fixture("10-command-transcript.txt");
    let mut checked = 0;
    for block in t.split("### socket=").skip(1) {
        let sock = block.lines().next().unwrap();
        let Some(cmd) = block.lines().find_map(|l| l.strip_prefix("$ ")) else {
            continue;
        };
        let text = block
            .split("--- as text ---\n")
            .nth(1)
            .and_then(|b| b.split("=== end ===").next())
            .unwrap_or("")
            .trim_end();
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
        } else if cmd.ends_with(" 300") || cmd.ends_with(" -1") || cmd == "set weight static/st1 50"
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
            (_, got) => panic!("{sock} `{cmd}` -> {text:?} classified as {got:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} replies checked");
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
    fn the_parsers_never_panic_on_mangled_real_replies(cut in 0usize..6000, junk in "[,\"\n# a-z0-9]{0,20}") {
        for f in ["20-show-stat-mixed-states.csv", "21-show-servers-state-mixed.txt", "03-show-info.txt"] {
            let text = fixture(f);
            let mut cut = cut.min(text.len());
            while !text.is_char_boundary(cut) { cut -= 1; }
            let s = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
            let _ = StatTable::parse(&s);
            let _ = ServersState::parse(&s);
            let _ = Info::parse(&s);
        }
    }
}
