//! A TCP relay between a client and a server that counts the bytes it carries and can delay,
//! cut and heal the link. It stands in for `tc netem`, which this machine's kernel lacks, and
//! it counts traffic the same way for every tool a benchmark compares (payload bytes each way,
//! whatever the tool reports about itself).
//!
//! Each connection is relayed by two threads per direction: a reader that timestamps what
//! arrives and a writer that sends it on once the delay has passed, so a delay does not
//! throttle throughput. A cut closes every open connection and refuses new ones until healed.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

struct Shared {
    target: SocketAddr,
    /// One-way delay, each direction.
    delay: Mutex<Duration>,
    cut: AtomicBool,
    stopped: AtomicBool,
    /// Client to server, server to client.
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

/// A running relay; dropping it stops it and closes its connections.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    /// Listens on `listen` (port 0 picks one) and relays every connection to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            delay: Mutex::new(Duration::ZERO),
            cut: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(s.target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                s.connections.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c), Ok(v)) = (client.try_clone(), server.try_clone()) {
                    lock(&s.open).extend([c, v]);
                }
                pipe(&s, &client, &server, true);
                pipe(&s, &server, &client, false);
            }
        });
        Ok(Relay { addr, shared })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Payload bytes carried so far: (client to server, server to client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.up.load(Ordering::Relaxed),
            self.shared.down.load(Ordering::Relaxed),
        )
    }

    /// Connections relayed so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Sets the one-way delay of each direction (for data that arrives from now on).
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.shared.delay) = d;
    }

    /// Closes every open connection and refuses new ones until [`Relay::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for s in lock(&self.shared.open).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Data in flight one way: what arrived, each with the time it is due, and whether the sender
/// has closed.
#[derive(Default)]
struct InFlight {
    due: VecDeque<(Instant, Vec<u8>)>,
    closed: bool,
}

/// Relays `from` to `to`: a reader thread queues what arrives with its due time, a writer
/// thread sends it when due.
fn pipe(shared: &Arc<Shared>, from: &TcpStream, to: &TcpStream, upward: bool) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let queue = Arc::new((Mutex::new(InFlight::default()), Condvar::new()));
    let (s, q) = (shared.clone(), queue.clone());
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let counter = if upward { &s.up } else { &s.down };
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    let due = Instant::now() + *lock(&s.delay);
                    lock(&q.0).due.push_back((due, buf[..n].to_vec()));
                    q.1.notify_one();
                }
            }
        }
        lock(&q.0).closed = true;
        q.1.notify_one();
    });
    thread::spawn(move || {
        loop {
            let next = {
                let mut g = lock(&queue.0);
                loop {
                    if let Some(front) = g.due.front() {
                        let now = Instant::now();
                        if front.0 <= now {
                            break g.due.pop_front();
                        }
                        let wait = front.0 - now;
                        g = queue
                            .1
                            .wait_timeout(g, wait)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    } else if g.closed {
                        break None;
                    } else {
                        g = queue.1.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                }
            };
            match next {
                Some((_, data)) => {
                    if to.write_all(&data).is_err() {
                        break;
                    }
                }
                None => {
                    let _ = to.shutdown(Shutdown::Write);
                    break;
                }
            }
        }
    });
}
