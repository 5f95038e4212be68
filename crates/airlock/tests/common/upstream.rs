//! Loopback upstream servers for the egress suites (egress, sealed): each records
//! what every connection sent and answers one response, over plain HTTP or over TLS
//! with a certificate from a fresh test CA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How an upstream answers each request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// `<name>: <request line>`, recording the request head.
    Line(&'static str),
    /// The whole request (head and body) echoed back, with `X-Echo-Length`.
    Echo,
}

/// A running upstream and what it received.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    /// The accept loop (aborting it closes the listener).
    pub accept: Option<tokio::task::AbortHandle>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes the listener: new connections are refused.
    #[allow(dead_code)] // not every suite stops its upstreams
    pub fn stop(&self) {
        if let Some(a) = &self.accept {
            a.abort();
        }
    }

    /// What each connection sent, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A plain-HTTP upstream on `ip`.
pub async fn http(ip: &str, answer: Answer) -> Upstream {
    serve_on(
        tokio::net::TcpListener::bind((ip, 0)).await.unwrap(),
        answer,
    )
}

/// A plain-HTTP upstream on a listener the test bound itself.
pub fn serve_on(l: tokio::net::TcpListener, answer: Answer) -> Upstream {
    let mut up = Upstream {
        addr: l.local_addr().unwrap(),
        seen: Arc::default(),
        accept: None,
    };
    let seen = up.seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move { respond(s, answer, &seen).await });
        }
    });
    up.accept = Some(task.abort_handle());
    up
}

/// A TLS upstream on `ip` whose certificate names `cert_name`, signed by a fresh CA
/// called `ca_name`; returns it with the CA's PEM.
pub async fn tls(ip: &str, cert_name: &str, ca_name: &str, answer: Answer) -> (Upstream, String) {
    let (acceptor, ca_pem) = super::test_tls_acceptor(cert_name, ca_name);
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let mut up = Upstream {
        addr: l.local_addr().unwrap(),
        seen: Arc::default(),
        accept: None,
    };
    let seen = up.seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (seen, acceptor) = (seen.clone(), acceptor.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    respond(tls, answer, &seen).await;
                }
            });
        }
    });
    up.accept = Some(task.abort_handle());
    (up, ca_pem)
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    answer: Answer,
    seen: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // A `Line` upstream reads at most 64 KiB of head (and answers even then).
    let cap = matches!(answer, Answer::Line(_)).then_some(65536);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if cap.is_some_and(|c| buf.len() >= c) {
            break buf.len();
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let resp = match answer {
        Answer::Line(name) => {
            let line = head.lines().next().unwrap_or("").to_string();
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).to_string());
            let body = format!("{name}: {line}");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Answer::Echo => {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request = String::from_utf8_lossy(&buf).to_string();
            seen.lock().unwrap().push(request.clone());
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Echo-Length: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
                request.len(),
                request.len()
            )
        }
    };
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}
