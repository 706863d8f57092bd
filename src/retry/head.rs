//! The copy of a request head kept for its retries.

use std::net::SocketAddr;

use http::header::HeaderName;
use http::request::Parts;
use http::{Extensions, HeaderValue, Method, Request, Uri, Version};
use hyper::upgrade::OnUpgrade;

use super::body::RetryBody;
use crate::PeerAddr;
use crate::balance::Tried;

/// A request head to send again: method, URI, version, headers and extensions.
///
/// The headers are kept as a list: one allocation, where a copy of the map takes two (and
/// most requests are never sent again). The map is built again for a retry.
///
/// Copying a head's extensions means a new map and a box per entry; the server's requests
/// carry only the ones below (the peer address, the upgrade, the backends tried), which are
/// copied one by one instead. A head with any other extension keeps a copy of the whole map.
#[derive(Clone)]
pub(crate) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    // In the map's order: a name's values together, in the order they came.
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Copied,
}

#[derive(Clone)]
enum Copied {
    Known {
        peer: Option<PeerAddr>,
        connect_info: Option<axum::extract::ConnectInfo<SocketAddr>>,
        upgrade: Option<OnUpgrade>,
        tried: Option<Tried>,
    },
    All(Extensions),
}

impl Head {
    /// A copy of `parts`.
    pub(crate) fn copy(parts: &Parts) -> Self {
        let ext = &parts.extensions;
        let peer = ext.get::<PeerAddr>().copied();
        let connect_info = ext.get::<axum::extract::ConnectInfo<SocketAddr>>().cloned();
        let upgrade = ext.get::<OnUpgrade>().cloned();
        let tried = ext.get::<Tried>().cloned();
        let known = usize::from(peer.is_some())
            + usize::from(connect_info.is_some())
            + usize::from(upgrade.is_some())
            + usize::from(tried.is_some());
        let extensions = if known == ext.len() {
            Copied::Known {
                peer,
                connect_info,
                upgrade,
                tried,
            }
        } else {
            Copied::All(ext.clone())
        };
        let mut headers = Vec::with_capacity(parts.headers.len());
        headers.extend(
            parts
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers,
            extensions,
        }
    }

    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request to send again, with an empty body; `last` moves the copy in.
    pub(crate) fn request<B>(this: &mut Option<Self>, last: bool) -> Option<Request<RetryBody<B>>> {
        let head = if last {
            this.take()?
        } else {
            this.as_ref()?.clone()
        };
        let mut req = Request::new(RetryBody::empty());
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        let headers = req.headers_mut();
        headers.reserve(head.headers.len());
        for (name, value) in head.headers {
            headers.append(name, value);
        }
        match head.extensions {
            Copied::All(ext) => *req.extensions_mut() = ext,
            Copied::Known {
                peer,
                connect_info,
                upgrade,
                tried,
            } => {
                let ext = req.extensions_mut();
                if let Some(peer) = peer {
                    ext.insert(peer);
                }
                if let Some(connect_info) = connect_info {
                    ext.insert(connect_info);
                }
                if let Some(upgrade) = upgrade {
                    ext.insert(upgrade);
                }
                if let Some(tried) = tried {
                    ext.insert(tried);
                }
            }
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Custom(u32);

    fn parts(custom: bool) -> Parts {
        let mut req = Request::put("http://lb.example/a?b=1")
            .version(Version::HTTP_10)
            .header("x-one", "1")
            .header("x-one", "2")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.1:4000".parse().unwrap()));
        req.extensions_mut().insert(Tried::new());
        if custom {
            req.extensions_mut().insert(Custom(7));
        }
        req.into_parts().0
    }

    #[test]
    fn a_copy_replays_the_head_and_the_extensions_known_or_not() {
        for custom in [false, true] {
            let original = parts(custom);
            let mut head = Some(Head::copy(&original));
            for last in [false, true] {
                let req: Request<RetryBody<()>> = Head::request(&mut head, last).unwrap();
                assert_eq!(req.method(), original.method);
                assert_eq!(req.uri(), &original.uri);
                assert_eq!(req.version(), original.version);
                assert_eq!(req.headers(), &original.headers);
                assert_eq!(
                    req.extensions().get::<PeerAddr>(),
                    original.extensions.get::<PeerAddr>()
                );
                assert!(req.extensions().get::<Tried>().is_some());
                assert_eq!(
                    req.extensions().get::<Custom>(),
                    custom.then_some(&Custom(7))
                );
                assert!(req.body().is_replay());
            }
            assert!(head.is_none(), "the last request took the copy");
        }
    }
}
