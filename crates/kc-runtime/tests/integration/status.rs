//! A raw gRPC service whose every call fails, and the call that reads its status: the
//! server's own service in the metrics and tracing tests.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tonic::transport::Channel;

/// The name of [`StatusService`].
pub(crate) const SERVICE: &str = "test.Status";

/// Answers `/test.Status/<Code>` with that status (`Internal`, `Unavailable`,
/// `InvalidArgument`; any other method `UNIMPLEMENTED`), trailers-only.
#[derive(Clone, Debug)]
pub(crate) struct StatusService;

impl NamedService for StatusService {
    const NAME: &'static str = SERVICE;
}

impl tower_service::Service<http::Request<tonic::body::Body>> for StatusService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let status = match request.uri().path().rsplit('/').next() {
            Some("Internal") => tonic::Status::internal("boom"),
            Some("Unavailable") => tonic::Status::unavailable("dependency down"),
            Some("InvalidArgument") => tonic::Status::invalid_argument("bad input"),
            _ => tonic::Status::unimplemented("no such method"),
        };
        ready(Ok(status.into_http()))
    }
}

/// Calls `path` (`/<service>/<method>`) with an empty message on `channel`: the status it
/// fails with.
pub(crate) async fn call(channel: &Channel, path: &str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = http::uri::PathAndQuery::try_from(path.to_owned()).expect("path");
    let result: Result<tonic::Response<()>, tonic::Status> = grpc
        .unary(
            tonic::Request::new(()),
            path,
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    result.expect_err("every call of the status service fails")
}
