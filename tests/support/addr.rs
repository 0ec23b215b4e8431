//! Address allocator for tests running in parallel threads and in parallel processes.
//!
//! Each test process picks a random `127.R.0.0/16` (R in 100..=250) and holds an exclusive
//! lock file for it (`/tmp/haserf-test-net/R.lock`), so two test processes on this machine
//! (other engineers' runs included) never share a range. Addresses `127.R.x.y` come from an
//! atomic counter; ports from binding port 0 on that address.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Range {
    second_octet: u8,
    _lock: Option<File>,
}

static RANGE: OnceLock<Range> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

fn pick_range() -> Range {
    use rand::Rng;
    let dir = std::path::Path::new("/tmp/haserf-test-net");
    let _ = std::fs::create_dir_all(dir);
    let mut rng = rand::thread_rng();
    for _ in 0..400 {
        let r: u8 = rng.gen_range(100..=250);
        let path = dir.join(format!("{r}.lock"));
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // The kernel drops the lock when this process exits, however it exits.
        if file.try_lock().is_ok() {
            return Range {
                second_octet: r,
                _lock: Some(file),
            };
        }
    }
    // Every range busy or /tmp unwritable: fall back to an unlocked random range.
    Range {
        second_octet: rng.gen_range(100..=250),
        _lock: None,
    }
}

/// The second octet R of this test process's `127.R.0.0/16`.
pub fn test_range() -> u8 {
    RANGE.get_or_init(pick_range).second_octet
}

/// A fresh loopback address `127.R.x.y`, unique within this test process.
pub fn alloc_ip() -> Ipv4Addr {
    let r = test_range();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let x = n / 254;
    assert!(x < 256, "address allocator exhausted 127.{r}.0.0/16");
    Ipv4Addr::new(127, r, x as u8, (n % 254 + 1) as u8)
}

/// A free TCP port on `ip`, found by binding port 0 (the listener is closed again).
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0))
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0 to find a free port: {e}"));
    l.local_addr().expect("local_addr").port()
}

/// A fresh address with a free TCP port: `127.R.x.y:PORT`.
pub fn alloc_socket_addr() -> SocketAddr {
    let ip = alloc_ip();
    SocketAddr::from((ip, free_port_on(ip)))
}
