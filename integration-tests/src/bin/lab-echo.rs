//! A minimal TCP probe for lab tests: `lab-echo listen ADDR` echoes every connection (and
//! prints `ready` once listening); `lab-echo connect ADDR TIMEOUT_MS` sends a line, expects it
//! back within the timeout, and exits 0 if it came back, 1 otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("listen"), Some(addr)) => listen(addr),
        (Some("connect"), Some(addr)) => {
            let ms = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1000);
            connect(addr, Duration::from_millis(ms))
        }
        _ => {
            eprintln!("usage: lab-echo listen ADDR | lab-echo connect ADDR TIMEOUT_MS");
            ExitCode::from(2)
        }
    }
}

fn listen(addr: &str) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lab-echo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => return,
            });
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() {
                let mut s = stream;
                let _ = s.write_all(line.as_bytes());
            }
        });
    }
    ExitCode::SUCCESS
}

fn connect(addr: &str, timeout: Duration) -> ExitCode {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("lab-echo: {addr} is not an address");
        return ExitCode::from(2);
    };
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"chorus\n")?;
        let mut back = [0u8; 7];
        s.read_exact(&mut back)?;
        Ok(&back == b"chorus\n")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lab-echo: {addr}: {e}");
            ExitCode::from(1)
        }
    }
}
