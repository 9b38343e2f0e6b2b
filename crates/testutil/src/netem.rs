//! A TCP proxy between a component and a server it depends on (object storage, usually): it
//! can slow one direction of traffic down, so a test can land a kill inside an upload every
//! time instead of racing a fast local server, and it can take the link down and up again,
//! for outage tests.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Forwards connections from a local port to `upstream`. Client-to-server bytes pass at no more
/// than the given rate (server-to-client bytes at full speed); [`Proxy::set_up`] cuts the link.
/// Stops accepting when dropped (connections already open finish on their own).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    stop: AtomicBool,
    down: AtomicBool,
    /// Both ends of every forwarded connection, to cut them when the link goes down.
    open: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// A proxy to `upstream`; `client_to_server_rate` in bytes per second (`None`: full speed).
    pub fn start(
        upstream: SocketAddr,
        client_to_server_rate: Option<u64>,
    ) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                if st.down.load(Ordering::SeqCst) {
                    // The link is down: the connection closes at once, nothing reaches upstream.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                st.open.lock().expect("proxy lock").extend([c3, s3]);
                std::thread::spawn(move || pipe(client, server, client_to_server_rate));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Ok(Proxy { addr, state })
    }

    /// Takes the link down (`false`: open connections are cut, new ones closed on arrival, as
    /// when the server is unreachable) or brings it back up.
    pub fn set_up(&self, up: bool) {
        self.state.down.store(!up, Ordering::SeqCst);
        if !up {
            for s in self.state.open.lock().expect("proxy lock").drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
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

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server; returns its address.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"ping")?;
        let mut got = [0u8; 4];
        s.read_exact(&mut got)?;
        Ok(got.to_vec())
    }

    #[test]
    fn forwards_and_cuts_the_link_on_demand() {
        let p = Proxy::start(echo(), Some(1 << 20)).unwrap();
        let mut open = TcpStream::connect(p.endpoint()).unwrap();
        assert_eq!(round_trip(&mut open).unwrap(), b"ping");
        p.set_up(false);
        // The open connection is cut, and a new one gets nothing through.
        assert!(round_trip(&mut open).is_err());
        let mut refused = TcpStream::connect(p.endpoint()).unwrap();
        assert!(round_trip(&mut refused).is_err());
        p.set_up(true);
        let mut again = TcpStream::connect(p.endpoint()).unwrap();
        assert_eq!(round_trip(&mut again).unwrap(), b"ping");
    }
}
