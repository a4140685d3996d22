//! Talking to a Rampart server: REST over HTTP(S) and the delivery WebSocket.

use crate::error::ClientError;
use futures_util::{SinkExt as _, StreamExt as _};
use rampart_proto::BlobId;
use rampart_proto::api::BlobStatus;
use rampart_proto::error::ErrorBody;
use rampart_proto::frame::{ClientFrame, ServerFrame};
use rampart_proto::limits::{MAX_FRAME_BYTES, MAX_POLICY_DOCUMENT_BYTES};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// The largest JSON reply read: the organisation's policy (2 MiB, a JSON
/// string inside JSON, so escaped) is the largest body the API has.
const MAX_JSON_BODY: usize = 3 * MAX_POLICY_DOCUMENT_BYTES;
use tokio_tungstenite::tungstenite::{
    self, Message, client::IntoClientRequest as _, http::HeaderValue,
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A REST client bound to one server and (optionally) one session token.
#[derive(Clone)]
pub struct Http {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    /// For file transfers: no limit on the whole request (a large download
    /// takes as long as it takes), only on silence.
    transfer: reqwest::Client,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Http({}, token: {})",
            self.base,
            if self.token.is_some() { "set" } else { "none" }
        )
    }
}

impl Http {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "server URL must start with http:// or https:// (got {base:?})"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(ClientError::network)?;
        let transfer = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(ClientError::network)?;
        Ok(Self {
            base,
            token,
            client,
            transfer,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A JSON body, refused once it passes [`MAX_JSON_BODY`]: a hostile or
    /// broken server cannot make the client buffer without end.
    async fn capped_body(mut resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        let too_big = || {
            ClientError::Protocol(format!(
                "the server sent a reply over {} MiB",
                MAX_JSON_BODY >> 20
            ))
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JSON_BODY as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(ClientError::network)? {
            if body.len() + chunk.len() > MAX_JSON_BODY {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn finish<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
        let status = resp.status();
        if status.is_success() {
            let bytes = Self::capped_body(resp).await?;
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol(e.to_string()));
        }
        let bytes = Self::capped_body(resp).await?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Server {
                code: body.code,
                // Say what to do next: the session is gone.
                message: if body.code == rampart_proto::ErrorCode::Unauthorized {
                    format!("{}; run `rampart login`", body.message)
                } else {
                    body.message
                },
                current_epoch: body.current_epoch,
            }),
            Err(_) => Err(ClientError::Protocol(format!(
                "HTTP {status} without an error body"
            ))),
        }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let req = self.auth(self.client.get(format!("{}{path}", self.base)));
        Self::finish(req.send().await.map_err(ClientError::network)?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.auth(self.client.post(format!("{}{path}", self.base)).json(body));
        Self::finish(req.send().await.map_err(ClientError::network)?).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.auth(self.client.put(format!("{}{path}", self.base)).json(body));
        Self::finish(req.send().await.map_err(ClientError::network)?).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let req = self.auth(self.client.delete(format!("{}{path}", self.base)));
        Self::finish::<serde_json::Value>(req.send().await.map_err(ClientError::network)?)
            .await
            .map(|_| ())
    }

    /// Uploads one part of a blob at `offset`.
    pub async fn put_blob_part(
        &self,
        blob: &BlobId,
        offset: u64,
        part: Vec<u8>,
    ) -> Result<BlobStatus, ClientError> {
        let url = format!("{}/v1/blobs/{blob}?offset={offset}", self.base);
        let req = self.auth(self.transfer.put(url)).body(part);
        Self::finish(req.send().await.map_err(ClientError::network)?).await
    }

    /// Starts downloading a blob from byte `from` (a resumed download).
    /// The response's body is the blob from there on.
    pub async fn get_blob(
        &self,
        blob: &BlobId,
        from: u64,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.auth(self.transfer.get(format!("{}/v1/blobs/{blob}", self.base)));
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let again = req.try_clone();
        let resp = match (req.send().await, again) {
            (Ok(resp), _) => resp,
            // A GET is safe to repeat: a pooled connection that the server
            // had just closed (say, after a download it cut short) fails
            // before any answer arrives.
            (Err(e), Some(again)) if e.is_request() || e.is_connect() => {
                again.send().await.map_err(ClientError::network)?
            }
            (Err(e), _) => return Err(ClientError::network(e)),
        };
        let expected = if from > 0 {
            reqwest::StatusCode::PARTIAL_CONTENT
        } else {
            reqwest::StatusCode::OK
        };
        if resp.status() == expected {
            return Ok(resp);
        }
        if resp.status().is_success() {
            return Err(ClientError::Protocol(format!(
                "the server answered a download with HTTP {}",
                resp.status()
            )));
        }
        Err(Self::finish::<serde_json::Value>(resp)
            .await
            .err()
            .unwrap_or_else(|| ClientError::Protocol("download refused".into())))
    }

    /// Opens the delivery WebSocket of this session.
    pub async fn websocket(&self) -> Result<Socket, ClientError> {
        let token = self.token.as_ref().ok_or(ClientError::NotLoggedIn)?;
        let url = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}/v1/ws")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}/v1/ws")
        } else {
            return Err(ClientError::Usage("bad server URL".into()));
        };
        let mut request = url.into_client_request().map_err(ClientError::network)?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::NotLoggedIn)?;
        request.headers_mut().insert("authorization", value);
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(resp) if resp.status() == 401 => ClientError::Server {
                    code: rampart_proto::ErrorCode::Unauthorized,
                    message: "session expired or logged out; run `rampart login`".into(),
                    current_epoch: None,
                },
                other => ClientError::network(other),
            })?;
        Ok(Socket { ws })
    }
}

/// The delivery WebSocket.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Socket(..)")
    }
}

impl Socket {
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.ws
            .send(Message::Binary(frame.encode().into()))
            .await
            .map_err(ClientError::network)
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::network(e)),
                Some(Ok(Message::Binary(bytes))) => {
                    return ServerFrame::decode(&bytes)
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
