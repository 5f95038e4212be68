//! Raw TCP destinations (`tcp://host:port`): each has a listener of its own in the
//! execution's network namespace, at the address the sandbox gave the name. A
//! connection accepted there is forwarded to the destination after the same checks as
//! HTTP egress: the server resolves the name itself, connects to the very address it
//! checked, counts the bytes against the execution's budget and logs the attempt
//! (method `TCP`). The destination is listed exactly, so (as with an exact HTTP entry)
//! a private address is reachable. A connection that cannot be forwarded is reset, so
//! the script's driver fails at once, and the log says why.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::event::Attempt;
use crate::meter::{Activity, Metered};
use crate::policy::TcpDestination;
use crate::serve::{logged_failure, open_upstream, tokio_listener, wait_stop, Shared};

/// Serves the listener of `dest` on a task of its own (logs once why there is none).
pub(crate) fn start(
    shared: Arc<Shared>,
    dest: TcpDestination,
    listener: Result<std::net::TcpListener, String>,
) {
    match listener {
        Ok(l) => {
            tokio::spawn(accept_loop(shared, dest, l));
        }
        Err(e) => {
            let t = dest.target();
            let attempt = Attempt::new(&shared, t.host.to_string(), t.port, "TCP", None);
            drop(attempt.with(
                false,
                &format!("the sandbox has no listener for {}: {e}", dest.text()),
            ));
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, dest: TcpDestination, listener: std::net::TcpListener) {
    let Some(listener) = tokio_listener(listener) else {
        return;
    };
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = shared.conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let sock = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp destination accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let (shared, dest) = (shared.clone(), dest.clone());
        tokio::spawn(async move {
            forward(shared, dest, sock).await;
            drop(permit);
        });
    }
}

/// Closes `sock` with a reset: the client sees the connection refused by its peer
/// rather than a clean end of stream it might take for an answer.
fn reset(sock: TcpStream) {
    // A zero linger never blocks (the deprecation is about non-zero ones): the close
    // sends RST at once.
    #[allow(deprecated)]
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(sock);
}

async fn forward(shared: Arc<Shared>, dest: TcpDestination, client: TcpStream) {
    let target = dest.target();
    let mut attempt = Attempt::new(&shared, target.host.to_string(), target.port, "TCP", None);
    let (upstream, addr) = match open_upstream(&shared, &target, true).await {
        Ok(u) => u,
        Err((status, reason)) => {
            attempt.set(false, logged_failure(dest.text(), status, &reason));
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    attempt.set(true, format!("allowed by {} ({addr})", dest.text()));
    let limits = &shared.cfg.limits;
    let (idle, longest) = (limits.idle_timeout, limits.max_tcp_duration);
    let meter = attempt.meter.clone();
    let mut client = Metered::client(client, Activity::new());
    let mut upstream = Metered::upstream(upstream, meter.clone());
    let mut stop = shared.stop.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = meter.idle(idle) => meter.cut(format!("closed after {} s idle", idle.as_secs())),
        _ = tokio::time::sleep(longest) => {
            meter.cut(format!("cut after {} s (the longest a TCP connection may last)", longest.as_secs()));
        }
        _ = wait_stop(&mut stop) => meter.cut("cut when the execution ended"),
    }
    drop(attempt);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{EgressConfig, EgressLimits, Listeners, NoHook, Policy, Session, TcpDestination};

    fn session(dests: &[String], listeners: Listeners) -> Session {
        let cfg = EgressConfig {
            policy: Policy::from_allowed_hosts(&Some(dests.to_vec())).expect("network"),
            limits: EgressLimits::default(),
            hook: Arc::new(NoHook),
            tls: None,
            tcp: dests
                .iter()
                .filter_map(|d| TcpDestination::parse(d))
                .collect(),
        };
        Session::start(cfg, listeners)
    }

    fn listener() -> (std::net::TcpListener, u16) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[tokio::test]
    async fn a_tcp_destination_is_forwarded_both_ways_and_logged() {
        // The destination: an echo server that answers with a prefix.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"echo:").await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let (proxy, _) = listener();
        let (db, db_port) = listener();
        let dests = vec![format!("tcp://127.0.0.1:{up_port}")];
        let mut s = session(
            &dests,
            Listeners {
                proxy,
                tcp: vec![Ok(db)],
            },
        );
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", db_port))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"echo:hello");
        // The attempt ends when both sides have closed.
        drop(c);
        let e = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("one event");
        assert_eq!(
            (e.host.as_str(), e.port, e.method.as_str()),
            ("127.0.0.1", up_port, "TCP")
        );
        assert!(e.allowed, "{e:?}");
        assert!(
            e.reason
                .starts_with(&format!("allowed by tcp://127.0.0.1:{up_port}")),
            "{}",
            e.reason
        );
        assert_eq!((e.bytes_up, e.bytes_down), (5, 10));
        s.stop();
    }

    #[tokio::test]
    async fn an_unreachable_destination_resets_the_client_and_logs_why() {
        // A port nobody listens on (bound, then closed).
        let (gone, gone_port) = listener();
        drop(gone);
        let (proxy, _) = listener();
        let (db, db_port) = listener();
        let dests = vec![
            format!("tcp://127.0.0.1:{gone_port}"),
            "tcp://db.invalid:5432".into(),
        ];
        let mut s = session(
            &dests,
            Listeners {
                proxy,
                tcp: vec![Ok(db), Err("no address left".into())],
            },
        );
        // The missing listener is logged once, at the start.
        let first = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("an event");
        assert_eq!(first.host, "db.invalid");
        assert!(!first.allowed);
        assert!(
            first
                .reason
                .contains("no listener for tcp://db.invalid:5432: no address left"),
            "{}",
            first.reason
        );
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", db_port))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let r = c.read(&mut buf).await;
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the client sees a reset, not an answer: {r:?}"
        );
        let e = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("an event");
        assert!(!e.allowed);
        assert!(crate::attempt_failed(e.allowed, &e.reason), "{}", e.reason);
        assert!(e.reason.contains("connecting to 127.0.0.1"), "{}", e.reason);
        s.stop();
    }
}
