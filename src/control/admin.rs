//! The admin HTTP listener (hyper, HTTP/1.1): `GET /metrics`, `GET /status`, `GET /healthz`,
//! `POST /reload`. It binds 127.0.0.1:9901 unless configured otherwise, and has no
//! authentication: keep it on loopback or a management network.
//!
//! It runs on the control plane's thread; a scrape asks each worker for its histograms and
//! waits at most [`COLLECT_TIMEOUT`] for them, so a stuck worker cannot hang monitoring.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::{Control, status, unix_seconds};
use crate::metrics::exposition::{self, ProcessInfo, Scrape};
use crate::metrics::histogram::Merged;
use crate::worker::Command;

const COLLECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn serve(listener: tokio::net::TcpListener, ctl: Rc<RefCell<Control>>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctl = ctl.clone();
        tokio::task::spawn_local(async move {
            let svc = service_fn(move |req| handle(ctl.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

type Resp = Response<Full<Bytes>>;

async fn handle(ctl: Rc<RefCell<Control>>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let body = metrics(&ctl).await;
            reply(StatusCode::OK, exposition::CONTENT_TYPE, body)
        }
        (&Method::GET, "/status") => {
            let doc = status::render(&ctl.borrow());
            json(StatusCode::OK, &doc)
        }
        (&Method::GET, "/healthz") => {
            if ctl.borrow().draining {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                reply(StatusCode::OK, "text/plain", "ok\n".into())
            }
        }
        (&Method::POST, "/reload") => {
            let result = ctl.borrow_mut().reload();
            match result {
                Ok(generation) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "result": "ok", "generation": generation }),
                ),
                Err(e) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({
                        "result": "error",
                        "error": e.to_string(),
                        "generation": ctl.borrow().tables.load().generation,
                    }),
                ),
            }
        }
        (_, "/metrics" | "/status" | "/healthz" | "/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    Ok(resp)
}

async fn metrics(ctl: &Rc<RefCell<Control>>) -> String {
    let (channels, table, process) = {
        let c = ctl.borrow();
        let table = c.tables.load_full();
        let process = ProcessInfo {
            version: env!("CARGO_PKG_VERSION"),
            workers: c.worker_count(),
            generation: table.generation,
            reloads_ok: c.reloads_ok,
            reloads_error: c.reloads_error,
            last_reload_success_unix: unix_seconds(c.last_success),
            draining: c.draining,
        };
        (c.worker_channels(), table, process)
    };
    let live = Arc::new(table.histogram_uids());
    let mut pending = Vec::with_capacity(channels.len());
    for tx in channels {
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Command::Collect {
                live: live.clone(),
                reply,
            })
            .is_ok()
        {
            pending.push(rx);
        }
    }
    let mut histograms = Merged::default();
    let deadline = tokio::time::Instant::now() + COLLECT_TIMEOUT;
    for rx in pending {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(h)) => histograms.add(h),
            _ => tracing::warn!("a worker did not send its histograms in time"),
        }
    }
    exposition::render(Scrape {
        table,
        histograms,
        process,
    })
}

fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut body = v.to_string();
    body.push('\n');
    reply(status, "application/json", body)
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
