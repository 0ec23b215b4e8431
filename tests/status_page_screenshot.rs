//! The Lua status page as a person sees it: headless Chromium (Debian's `chromium`) loads
//! `lua.haserf-status` from a real HAProxy beside a real agent with three stock serf web
//! nodes, and the screenshot shows the live slot table — the three member rows' green
//! `ready` cells and the READY badge are there in pixels, the DOM Chromium rendered lists the
//! members and states, and the page reloads itself. With `HASERF_UPDATE_SCREENSHOT=1` the
//! PNG is copied to docs/status-page.png (the picture docs/companion.md shows).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::agent::web_nodes;
use support::{alloc_ip, free_port_on, Haproxy, HaproxyConfig, HaserfAgent, HaserfOptions};

const T: Duration = Duration::from_secs(30);
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;

fn chromium() -> String {
    for name in ["chromium", "chromium-browser"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name.to_string();
        }
    }
    panic!("headless Chromium not found: apt-get install chromium (scripts/install-deps.sh does)");
}

/// Runs headless Chromium on `url` with `args` (bounded to 90 s); returns stdout.
fn headless(url: &str, profile: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["-k", "5", "90", &chromium()])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--window-size={WIDTH},{HEIGHT}"),
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pixels of exactly this colour in an RGB(A) PNG, and its size.
fn count_colour(png_path: &Path, rgb: [u8; 3]) -> (usize, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let n = buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| p[..3] == rgb)
        .count();
    (n, info.width, info.height)
}

#[test]
fn headless_chromium_shows_the_live_slot_table_on_the_status_page() {
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let mut nodes = web_nodes(4, "web");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("haserf.sock").display().to_string();
    let h = Haproxy::start(HaproxyConfig::status_page(
        fe,
        10,
        &format!("setenv HASERF_STATUS_SOCKET {sock}"),
    ));
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .env("HASERF_STATUS_SOCKET", &sock),
    );
    agent.wait_serving(&["web1", "web2", "web3", "web4"], T);
    // a departed member (shown greyed under Members) and some traffic (the served column)
    nodes[3].serf.leave();
    support::wait_until(T, "web4's slot freed", || {
        let placed = agent.placed();
        if placed.len() == 3 {
            Ok(())
        } else {
            Err(placed)
        }
    });
    for _ in 0..30 {
        support::http_get(fe, "/").expect("a request through HAProxy");
    }
    let url = format!("http://{fe}/haserf");

    // what Chromium rendered: the page, its live slot table, and its own reload
    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&url, profile.path(), &["--dump-dom"]);
    for needle in [
        "<h1>haserf · lb1",
        "READY",
        "Backend web",
        "3 used, 7 free",
        "class=\"gone\"",
        "<th>served</th>",
        "http-equiv=\"refresh\"",
    ] {
        assert!(
            dom.contains(needle),
            "{needle:?} not in the rendered page:\n{dom}"
        );
    }
    for n in ["web1", "web2", "web3"] {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{n}</td>")) && r.contains("s-ready"))
            .unwrap_or_else(|| panic!("no ready slot row for {n}:\n{dom}"));
        assert!(row.contains(">UP<"), "{n}: {row}");
    }

    // the picture: three green `ready` cells and the green badge, at the window's size
    let shot = dir.path().join("status-page.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    headless(&url, profile.path(), &[&shot_arg]);
    let (ready_px, w, hgt) = count_colour(&shot, [0xda, 0xfb, 0xe1]);
    assert_eq!((w, hgt), (WIDTH, HEIGHT));
    assert!(
        ready_px >= 3 * 600,
        "the three ready cells are not in the screenshot ({ready_px} px of their colour)"
    );
    let (badge_px, _, _) = count_colour(&shot, [0x1a, 0x7f, 0x37]);
    assert!(
        badge_px >= 300,
        "no READY badge in the screenshot ({badge_px} px)"
    );
    if std::env::var_os("HASERF_UPDATE_SCREENSHOT").is_some() {
        let dest = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-page.png");
        std::fs::copy(&shot, dest).unwrap();
    }
}
