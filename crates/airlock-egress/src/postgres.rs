//! Sealed PostgreSQL logins: the script signs in with a per-execution placeholder,
//! the server signs in upstream with the real password.
//!
//! On the script's side the forwarder speaks just enough of the protocol to take the
//! login: it declines TLS and GSS encryption (the hop is the execution's own loopback),
//! reads the startup packet (the credential's user and database only, a short list of
//! session parameters), asks for a cleartext password and accepts exactly the
//! placeholder. Upstream it connects to the address it checked, negotiates TLS
//! (`verify-full`: the system roots and the operator's CA bundle, the credential's
//! host as the name; a server that answers "no TLS" is refused, never spoken to in
//! clear), sends the startup packet (with `default_transaction_read_only=on` for a
//! read-only credential) and answers SCRAM-SHA-256, md5 or cleartext with the real
//! password. After `AuthenticationOk` it relays bytes both ways untouched. The
//! password exists only in the server's memory: never in the sandbox, a log line or a
//! response. Messages to the script are PostgreSQL `ErrorResponse`s, so its driver
//! shows them as it would the server's own.

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// How the forwarder reaches the database server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    /// TLS required, certificate and name verified.
    VerifyFull,
    /// Plain TCP (the operator's choice, for a server on a trusted network).
    Disable,
}

/// One sealed PostgreSQL credential as one execution uses it.
pub struct PgLogin {
    /// The credential's name (logged, never its value).
    pub credential: String,
    pub user: String,
    pub database: String,
    /// The real password: used upstream only.
    pub password: String,
    /// What the script holds instead (and the only password it may present).
    pub placeholder: String,
    pub tls: PgTls,
    /// Start every session with `default_transaction_read_only=on`.
    pub read_only: bool,
}

impl std::fmt::Debug for PgLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLogin")
            .field("credential", &self.credential)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A stream either side may be.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3_0: i32 = 0x0003_0000;

/// Session parameters a script's startup packet may carry upstream. `options` is not
/// among them (it could turn read-only off), nor `replication`.
const PASSED_PARAMETERS: [&str; 7] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
];

/// Largest startup or authentication message accepted from either side.
const MAX_AUTH_MESSAGE: usize = 64 * 1024;

/// What the script's first packets asked for.
pub(crate) enum Opening {
    /// A login: the parameters of its startup packet.
    Startup(Vec<(String, String)>),
    /// A cancel request of an earlier session (its 16 bytes, forwarded as they are).
    Cancel(Vec<u8>),
}

/// A failure on the way in: what the log says and, when the script should be told in
/// protocol terms, the SQLSTATE and message of the `ErrorResponse` it gets.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) log: String,
    pub(crate) tell: Option<(&'static str, String)>,
    /// The script presented another sealed credential's placeholder.
    pub(crate) violation: Option<String>,
}

impl Failed {
    fn told(code: &'static str, msg: impl Into<String>) -> Failed {
        let msg = msg.into();
        Failed {
            log: msg.clone(),
            tell: Some((code, msg)),
            violation: None,
        }
    }

    fn quiet(log: impl Into<String>) -> Failed {
        Failed {
            log: log.into(),
            tell: None,
            violation: None,
        }
    }
}

fn io_failed(what: &str) -> impl Fn(std::io::Error) -> Failed + '_ {
    move |e| Failed::quiet(format!("{what}: {e}"))
}

/// An `ErrorResponse` (severity FATAL).
pub(crate) fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

async fn read_untyped(s: &mut (impl AsyncRead + Unpin + ?Sized)) -> Result<(i32, Vec<u8>), Failed> {
    let len = s
        .read_i32()
        .await
        .map_err(io_failed("reading the startup packet"))?;
    let len = usize::try_from(len).unwrap_or(0);
    if !(8..=MAX_AUTH_MESSAGE).contains(&len) {
        return Err(Failed::quiet(format!("a startup packet of {len} bytes")));
    }
    let code = s
        .read_i32()
        .await
        .map_err(io_failed("reading the startup packet"))?;
    let mut body = vec![0u8; len - 8];
    s.read_exact(&mut body)
        .await
        .map_err(io_failed("reading the startup packet"))?;
    Ok((code, body))
}

/// One typed message (`tag`, body).
async fn read_typed(
    s: &mut (impl AsyncRead + Unpin + ?Sized),
    side: &str,
) -> Result<(u8, Vec<u8>), Failed> {
    let what = format!("reading from the {side}");
    let tag = s
        .read_u8()
        .await
        .map_err(|e| Failed::quiet(format!("{what}: {e}")))?;
    let len = s
        .read_i32()
        .await
        .map_err(|e| Failed::quiet(format!("{what}: {e}")))?;
    let len = usize::try_from(len).unwrap_or(0);
    if !(4..=MAX_AUTH_MESSAGE).contains(&len) {
        return Err(Failed::quiet(format!("{what}: a message of {len} bytes")));
    }
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body)
        .await
        .map_err(|e| Failed::quiet(format!("{what}: {e}")))?;
    Ok((tag, body))
}

fn cstrings(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Reads the script's opening: declines TLS and GSS encryption until the startup
/// packet (or a cancel request) arrives.
pub(crate) async fn opening(client: &mut (impl Io + ?Sized)) -> Result<Opening, Failed> {
    for _ in 0..3 {
        let (code, body) = read_untyped(client).await?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                client
                    .write_all(b"N")
                    .await
                    .map_err(io_failed("answering the script"))?;
            }
            CANCEL_REQUEST if body.len() == 8 => {
                let mut raw = 16i32.to_be_bytes().to_vec();
                raw.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
                raw.extend_from_slice(&body);
                return Ok(Opening::Cancel(raw));
            }
            PROTOCOL_3_0 => {
                let parts = cstrings(&body);
                let mut params = Vec::new();
                let mut it = parts.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if k.is_empty() {
                        break;
                    }
                    params.push((k, v));
                }
                return Ok(Opening::Startup(params));
            }
            other => {
                return Err(Failed::told(
                    "08P01",
                    format!(
                        "Airlock's database forwarder speaks protocol 3.0 only (the client asked for {}.{})",
                        other >> 16,
                        other & 0xffff
                    ),
                ))
            }
        }
    }
    Err(Failed::told("08P01", "too many encryption requests"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Takes the script's password (one of `logins`' placeholders, and nothing else),
/// then checks the startup parameters against that login. `others`: placeholders of
/// the execution's other sealed credentials (presenting one is a violation). Returns
/// the login and the parameters to pass upstream.
pub(crate) async fn take_login(
    client: &mut (impl Io + ?Sized),
    logins: &[Arc<PgLogin>],
    params: Vec<(String, String)>,
    others: &[(String, Vec<u8>)],
) -> Result<(Arc<PgLogin>, Vec<(String, String)>), Failed> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("user").unwrap_or_default().to_string();
    let database = get("database").unwrap_or(&user).to_string();
    if get("replication").is_some() {
        return Err(Failed::told(
            "28000",
            "replication connections are not forwarded",
        ));
    }
    // AuthenticationCleartextPassword: the hop is the execution's own loopback.
    client
        .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
        .await
        .map_err(io_failed("asking the script for its password"))?;
    let (tag, body) = read_typed(client, "script").await?;
    if tag != b'p' {
        return Err(Failed::told("08P01", "expected a password message"));
    }
    let presented = body.strip_suffix(&[0]).unwrap_or(&body);
    let Some(login) = logins
        .iter()
        .find(|l| constant_time_eq(presented, l.placeholder.as_bytes()))
    else {
        let violation = others
            .iter()
            .find(|(_, p)| memchr::memmem::find(presented, p).is_some())
            .map(|(n, _)| n.clone());
        let names: Vec<&str> = logins.iter().map(|l| l.credential.as_str()).collect();
        let msg = match &violation {
            Some(n) => format!(
                "password authentication failed for user \"{user}\": the password is the placeholder of sealed credential {n}, which is not bound to this database"
            ),
            None => format!(
                "password authentication failed for user \"{user}\": use this execution's settings.get(\"{}\") as it is",
                names.join("\") or settings.get(\"")
            ),
        };
        return Err(Failed {
            log: msg.clone(),
            tell: Some(("28P01", msg)),
            violation,
        });
    };
    if user != login.user || database != login.database {
        return Err(Failed::told(
            "28000",
            format!(
                "the sealed credential {} signs in as user \"{}\" to database \"{}\" only (asked: user \"{user}\", database \"{database}\")",
                login.credential, login.user, login.database
            ),
        ));
    }
    let mut upstream: Vec<(String, String)> = vec![
        ("user".into(), login.user.clone()),
        ("database".into(), login.database.clone()),
    ];
    for (k, v) in params {
        if PASSED_PARAMETERS.contains(&k.as_str()) {
            upstream.push((k, v));
        }
    }
    if login.read_only {
        upstream.push(("default_transaction_read_only".into(), "on".into()));
    }
    Ok((login.clone(), upstream))
}

/// Negotiates TLS with the server when the login asks for it. `host`: the name the
/// certificate must carry.
pub(crate) async fn secure(
    mut tcp: Box<dyn Io>,
    tls: PgTls,
    host: &str,
    roots: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Box<dyn Io>, bool), Failed> {
    if tls == PgTls::Disable {
        return Ok((tcp, false));
    }
    let Some(base) = roots else {
        return Err(Failed::told(
            "08000",
            "the server has no TLS roots to verify the database server with",
        ));
    };
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf)
        .await
        .map_err(io_failed("asking the database server for TLS"))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(io_failed("asking the database server for TLS"))?;
    if answer != b'S' {
        return Err(Failed::told(
            "08000",
            format!(
                "the database server at {host} does not offer TLS, and this credential requires it (tls verify-full): the password was not sent"
            ),
        ));
    }
    let mut cfg = (*base).clone();
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| Failed::told("08000", format!("{host} is not a TLS server name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            Failed::told(
                "08000",
                format!("TLS with the database server at {host} failed: {e}"),
            )
        })?;
    Ok((Box::new(stream), true))
}

/// Signs in upstream with the real password. Returns the method used.
pub(crate) async fn sign_in(
    server: &mut (impl Io + ?Sized),
    login: &PgLogin,
    params: &[(String, String)],
) -> Result<&'static str, Failed> {
    let mut buf = BytesMut::new();
    frontend::startup_message(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &mut buf,
    )
    .map_err(io_failed("writing the startup packet"))?;
    server
        .write_all(&buf)
        .await
        .map_err(io_failed("writing to the database server"))?;
    let mut method = "trust";
    let mut scram: Option<sasl::ScramSha256> = None;
    loop {
        let (tag, body) = read_typed(server, "database server").await?;
        match tag {
            b'R' if body.len() >= 4 => {
                let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let data = &body[4..];
                buf.clear();
                match code {
                    0 => return Ok(method),
                    3 => {
                        method = "cleartext password";
                        frontend::password_message(login.password.as_bytes(), &mut buf)
                            .map_err(io_failed("writing the password"))?;
                    }
                    5 if data.len() == 4 => {
                        method = "md5";
                        let salt = [data[0], data[1], data[2], data[3]];
                        let hash = md5_hash(login.user.as_bytes(), login.password.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut buf)
                            .map_err(io_failed("writing the password"))?;
                    }
                    10 => {
                        let mechanisms = cstrings(data);
                        if !mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256) {
                            return Err(Failed::told(
                                "28000",
                                format!(
                                    "the database server offers no SCRAM-SHA-256 ({})",
                                    mechanisms.join(", ")
                                ),
                            ));
                        }
                        method = "SCRAM-SHA-256";
                        let s = sasl::ScramSha256::new(
                            login.password.as_bytes(),
                            sasl::ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut buf)
                            .map_err(io_failed("writing the SCRAM message"))?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| Failed::quiet("SCRAM continue out of order"))?;
                        s.update(data)
                            .map_err(|e| Failed::told("28000", format!("SCRAM with the database server failed: {e}")))?;
                        frontend::sasl_response(s.message(), &mut buf)
                            .map_err(io_failed("writing the SCRAM message"))?;
                    }
                    12 => {
                        // Verifies the server's signature: a server that does not know
                        // the password cannot complete the exchange.
                        let s = scram.as_mut().ok_or_else(|| Failed::quiet("SCRAM final out of order"))?;
                        s.finish(data).map_err(|e| {
                            Failed::told("28000", format!("the database server's SCRAM signature is wrong: {e}"))
                        })?;
                        continue;
                    }
                    other => {
                        return Err(Failed::told(
                            "28000",
                            format!("the database server asks for authentication method {other}, which the forwarder does not speak"),
                        ))
                    }
                }
                server
                    .write_all(&buf)
                    .await
                    .map_err(io_failed("writing to the database server"))?;
            }
            b'E' => {
                let fields = error_fields(&body);
                let code = fields
                    .iter()
                    .find(|(t, _)| *t == b'C')
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let msg = fields
                    .iter()
                    .find(|(t, _)| *t == b'M')
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                return Err(Failed {
                    log: format!("the database server refused the login: {msg} ({code})"),
                    tell: Some((
                        "28000",
                        format!(
                            "the database server refused the login of sealed credential {}: {msg}",
                            login.credential
                        ),
                    )),
                    violation: None,
                });
            }
            // NegotiateProtocolVersion, notices: nothing to answer.
            b'v' | b'N' => {}
            other => {
                return Err(Failed::quiet(format!(
                    "unexpected message {:?} from the database server during login",
                    other as char
                )))
            }
        }
    }
}

fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// AuthenticationOk, for the script once the server let us in.
pub(crate) const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
