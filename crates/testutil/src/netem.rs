//! A TCP proxy that slows one direction of traffic down: a slow network between a component
//! and its object storage, so a test can land a kill inside an upload every time instead of
//! racing a fast local server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Forwards connections from a local port to `upstream`, passing client-to-server bytes at
/// no more than `bytes_per_sec`; server-to-client bytes pass at full speed. Stops accepting
/// when dropped (connections already open finish on their own).
#[derive(Debug)]
pub struct SlowProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    pub fn start(upstream: SocketAddr, bytes_per_sec: u64) -> std::io::Result<SlowProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pipe(client, server, Some(bytes_per_sec)));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Ok(SlowProxy { addr, stop })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to`, at most `rate` bytes per second when given.
fn pipe(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
