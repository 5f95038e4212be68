//! The runner <-> worker wire protocol.
//!
//! Frames are a 4-byte big-endian length followed by a UTF-8 JSON object with a `"type"`.
//! The worker is hostile, so everything coming from it is parsed strictly here, with a
//! size cap, and any malformed frame is a protocol violation that ends the execution.
//! Unknown message types from the server side are ignored by the SDK, so new message
//! kinds (egress proxy, ...) can be added without breaking old workers.

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted or sent, either way.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest `llm.complete` prompt, in UTF-8 bytes (the SDK checks the same limit, but a
/// script can write its own frames, so the server enforces it).
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;

/// Longest `llm.complete` model name, in characters (at least one).
pub const MAX_MODEL_CHARS: usize = 200;

/// Longest request id a worker may choose. The id is only echoed back to the worker:
/// the server names each request itself, so nothing the script chose here is shown.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// A message from the worker (the sandboxed script's process).
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMessage {
    /// `set_result(value)`; the last one wins.
    Result(Value),
    LlmRequest {
        request_id: String,
        prompt: String,
        model: String,
    },
    Done,
    Error {
        error_type: String,
        message: String,
        traceback: String,
    },
}

/// Why a frame from the worker was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame is not a JSON object: {0}")]
    NotJson(String),
    #[error("frame has no string \"type\"")]
    NoType,
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("frame {kind:?} is missing or has a bad field {field:?}")]
    BadField { kind: String, field: &'static str },
    #[error("truncated frame")]
    Truncated,
}

/// Encodes one frame. Fails if the encoded JSON is larger than [`MAX_FRAME`].
pub fn encode_frame(value: &Value) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::NotJson(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn str_field(
    obj: &Map<String, Value>,
    kind: &str,
    field: &'static str,
    max: usize,
) -> Result<String, FrameError> {
    match obj.get(field) {
        Some(Value::String(s)) if s.len() <= max => Ok(s.clone()),
        _ => Err(FrameError::BadField {
            kind: kind.to_string(),
            field,
        }),
    }
}

/// Parses the body of one frame from the worker.
pub fn parse_worker_frame(body: &[u8]) -> Result<WorkerMessage, FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(FrameError::NotJson("not an object".into()));
    };
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(FrameError::NoType),
    };
    match kind.as_str() {
        "result" => match obj.remove("value") {
            Some(v) => Ok(WorkerMessage::Result(v)),
            None => Err(FrameError::BadField {
                kind,
                field: "value",
            }),
        },
        "llm_request" => {
            let request_id = str_field(&obj, &kind, "request_id", MAX_REQUEST_ID_BYTES)?;
            let prompt = str_field(&obj, &kind, "prompt", MAX_PROMPT_BYTES)?;
            let model = str_field(&obj, &kind, "model", MAX_MODEL_CHARS * 4)?;
            let chars = model.chars().count();
            if chars == 0 || chars > MAX_MODEL_CHARS {
                return Err(FrameError::BadField {
                    kind,
                    field: "model",
                });
            }
            Ok(WorkerMessage::LlmRequest {
                request_id,
                prompt,
                model,
            })
        }
        "done" => Ok(WorkerMessage::Done),
        "error" => Ok(WorkerMessage::Error {
            error_type: str_field(&obj, &kind, "error_type", 1000)?,
            message: str_field(&obj, &kind, "message", MAX_FRAME)?,
            traceback: str_field(&obj, &kind, "traceback", MAX_FRAME)?,
        }),
        _ => Err(FrameError::UnknownType(kind)),
    }
}

/// Reads one frame body. `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Result<Vec<u8>, FrameError>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return Ok(if got == 0 {
                None
            } else {
                Some(Err(FrameError::Truncated))
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Ok(Some(Err(FrameError::TooLarge(len))));
    }
    let mut body = vec![0u8; len];
    match r.read_exact(&mut body).await {
        Ok(_) => Ok(Some(Ok(body))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(Some(Err(FrameError::Truncated)))
        }
        Err(e) => Err(e),
    }
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, value: &Value) -> std::io::Result<()> {
    let frame = encode_frame(value)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_length_prefix() {
        let f = encode_frame(&json!({"type":"done"})).unwrap();
        assert_eq!(&f[..4], &(15u32).to_be_bytes());
        assert_eq!(&f[4..], br#"{"type":"done"}"#);
    }

    #[test]
    fn parses_each_worker_message() {
        assert_eq!(
            parse_worker_frame(br#"{"type":"result","value":[1,2]}"#).unwrap(),
            WorkerMessage::Result(json!([1, 2]))
        );
        assert_eq!(
            parse_worker_frame(br#"{"type":"done"}"#).unwrap(),
            WorkerMessage::Done
        );
        assert_eq!(
            parse_worker_frame(
                br#"{"type":"llm_request","request_id":"1","prompt":"p","model":"m"}"#
            )
            .unwrap(),
            WorkerMessage::LlmRequest {
                request_id: "1".into(),
                prompt: "p".into(),
                model: "m".into()
            }
        );
        assert_eq!(
            parse_worker_frame(
                br#"{"type":"error","error_type":"E","message":"m","traceback":"t"}"#
            )
            .unwrap(),
            WorkerMessage::Error {
                error_type: "E".into(),
                message: "m".into(),
                traceback: "t".into()
            }
        );
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(matches!(
            parse_worker_frame(b"nope"),
            Err(FrameError::NotJson(_))
        ));
        assert_eq!(
            parse_worker_frame(b"[1]"),
            Err(FrameError::NotJson("not an object".into()))
        );
        assert_eq!(parse_worker_frame(br#"{"x":1}"#), Err(FrameError::NoType));
        assert_eq!(
            parse_worker_frame(br#"{"type":"boom"}"#),
            Err(FrameError::UnknownType("boom".into()))
        );
        assert_eq!(
            parse_worker_frame(
                br#"{"type":"llm_request","request_id":1,"prompt":"p","model":"m"}"#
            ),
            Err(FrameError::BadField {
                kind: "llm_request".into(),
                field: "request_id"
            })
        );
        let long_model = format!(
            r#"{{"type":"llm_request","request_id":"1","prompt":"p","model":"{}"}}"#,
            "m".repeat(201)
        );
        assert!(parse_worker_frame(long_model.as_bytes()).is_err());
        // 200 characters are accepted even where they take more than 200 bytes.
        let wide_model = format!(
            r#"{{"type":"llm_request","request_id":"1","prompt":"p","model":"{}"}}"#,
            "é".repeat(200)
        );
        assert!(parse_worker_frame(wide_model.as_bytes()).is_ok());
        let empty_model = br#"{"type":"llm_request","request_id":"1","prompt":"p","model":""}"#;
        assert!(parse_worker_frame(empty_model).is_err());
    }

    #[test]
    fn enforces_the_prompt_and_request_id_limits_itself() {
        let frame = |prompt: &str, id: &str| {
            serde_json::to_vec(
                &json!({"type":"llm_request","request_id":id,"prompt":prompt,"model":"m"}),
            )
            .unwrap()
        };
        assert!(parse_worker_frame(&frame(&"p".repeat(MAX_PROMPT_BYTES), "1")).is_ok());
        assert_eq!(
            parse_worker_frame(&frame(&"p".repeat(MAX_PROMPT_BYTES + 1), "1")),
            Err(FrameError::BadField {
                kind: "llm_request".into(),
                field: "prompt"
            })
        );
        assert_eq!(
            parse_worker_frame(&frame("p", &"1".repeat(MAX_REQUEST_ID_BYTES + 1))),
            Err(FrameError::BadField {
                kind: "llm_request".into(),
                field: "request_id"
            })
        );
    }

    #[tokio::test]
    async fn read_frame_caps_and_truncation() {
        let mut big: &[u8] = &((MAX_FRAME as u32) + 1).to_be_bytes();
        assert_eq!(
            read_frame(&mut big).await.unwrap(),
            Some(Err(FrameError::TooLarge(MAX_FRAME + 1)))
        );
        let mut short: &[u8] = &[0, 0, 0, 5, b'{'];
        assert_eq!(
            read_frame(&mut short).await.unwrap(),
            Some(Err(FrameError::Truncated))
        );
        let mut empty: &[u8] = &[];
        assert_eq!(read_frame(&mut empty).await.unwrap(), None);
        let frame = encode_frame(&json!({"type":"done"})).unwrap();
        let mut ok: &[u8] = &frame;
        assert_eq!(
            read_frame(&mut ok).await.unwrap(),
            Some(Ok(br#"{"type":"done"}"#.to_vec()))
        );
    }
}
