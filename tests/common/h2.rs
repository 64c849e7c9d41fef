//! A minimal HTTP/2 (prior knowledge) client for the security tests: what the tiny HTTP/1.1
//! client cannot send, request trailers and `:path` values as given.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub struct H2Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl H2Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/2 request to 127.0.0.1:`port`; `trailers` are sent after the body when not empty.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
) -> Result<H2Response, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut map = HeaderMap::new();
        for (k, v) in trailers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let full = Full::new(Bytes::copy_from_slice(body));
        let req = if map.is_empty() {
            builder.body(full.boxed())
        } else {
            builder.body(full.with_trailers(async move { Some(Ok(map)) }).boxed())
        }
        .map_err(|e| e.to_string())?;
        let fut = sender.send_request(req);
        let resp = tokio::time::timeout(std::time::Duration::from_secs(30), fut)
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let collected = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect()
            })
            .unwrap_or_default();
        let body = collected.to_bytes().to_vec();
        Ok(H2Response {
            status,
            body,
            trailers,
        })
    })
}
