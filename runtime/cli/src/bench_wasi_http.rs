//! The `wasmtime serve` side of `plinth bench-server --only render`: hello-metric's card
//! as a `wasi:http/proxy` component (`tests/guests/http-hello`), served the way
//! `wasmtime serve` serves one: `wasmtime-wasi-http` over hyper's HTTP/1, an engine with
//! wasmtime's default configuration and pooling allocator (no fuel, no epochs), and a
//! fresh instance per request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

struct Served {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: NoOutgoing,
}

impl WasiView for Served {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Served {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing requests refused: the card needs none, and the crate is built without its
/// default client (TLS and all).
struct NoOutgoing;

type Sent = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

impl WasiHttpHooks for NoOutgoing {
    fn send_request(
        &mut self,
        _request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Sent,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, Sent)>> + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Serves `component` on a loopback port until the returned task is aborted; requests
/// must carry `Authorization: Bearer <token>`, which the guest checks.
pub async fn serve(
    component: &[u8],
    token: &str,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).map_err(wasmtime_error)?;
    let component = Component::new(&engine, component).map_err(wasmtime_error)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasmtime_error)?;
    let pre = linker
        .instantiate_pre(&component)
        .and_then(ProxyPre::new)
        .map_err(wasmtime_error)
        .context("linking the wasi:http component")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token: Arc<str> = token.into();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (pre, token) = (pre.clone(), token.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    handle(pre.clone(), token.clone(), request)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// One request in a fresh instance, as `wasmtime serve` runs a wasi:http p2 component.
async fn handle(
    pre: ProxyPre<Served>,
    token: Arc<str>,
    request: hyper::Request<hyper::body::Incoming>,
) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
    let mut store = Store::new(
        pre.engine(),
        Served {
            wasi: WasiCtx::builder().env("BENCH_TOKEN", &*token).build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: NoOutgoing,
        },
    );
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(wasmtime_error)?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(wasmtime_error)?;
    // The guest runs on its own task: it may go on writing the body after the response
    // has been handed to hyper.
    let guest = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(anyhow!("the guest answered an error: {code:?}")),
        Err(_) => match guest.await {
            Ok(Err(error)) => Err(wasmtime_error(error)),
            ended => bail!("the guest set no response ({ended:?})"),
        },
    }
}

fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow!("{error:#}")
}
