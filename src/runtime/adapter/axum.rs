//! [`WebSocketUpgrade`] as an axum extractor (feature `axum`): from any state that
//! holds an [`Adapter`] (`FromRef`), so one `any(handler)` route serves HTTP/1.1
//! upgrades and HTTP/2 extended CONNECTs alike (axum routes CONNECT only through
//! `any`, or `on(MethodFilter::CONNECT, ..)`).

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::{Adapter, UpgradeRejection, WebSocketUpgrade};

impl<S> FromRequestParts<S> for WebSocketUpgrade
where
    Adapter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        WebSocketUpgrade::from_parts(parts, &Adapter::from_ref(state))
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        UpgradeRejection::into_response(self).map(axum::body::Body::new)
    }
}
