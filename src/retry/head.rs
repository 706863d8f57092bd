//! The copy of a request head kept for its retries.

use http::header::HeaderName;
use http::request::Parts;
use http::{Extensions, HeaderValue, Method, Request, Uri, Version};

use crate::PeerAddr;
use crate::balance::Tried;

/// A request head to send again: method, URI, version, headers and extensions.
///
/// The headers are kept as a list: one allocation, where a copy of the map takes two (and
/// most requests are never sent again). The map is built again for a retry.
///
/// Copying a head's extensions means a new map and a box per entry; the server's requests
/// carry only the [`Known`] ones, which are copied one by one instead. A head with any other
/// extension keeps a copy of the whole map.
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
    Known(Known),
    All(Extensions),
}

/// The extensions a proxied request carries: the peer address, the upgrade, the backends
/// tried (and axum's peer address, with that feature).
#[derive(Clone, Default)]
struct Known {
    peer: Option<PeerAddr>,
    #[cfg(feature = "axum")]
    connect_info: Option<axum::extract::ConnectInfo<std::net::SocketAddr>>,
    #[cfg(feature = "proxy")]
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    tried: Option<Tried>,
}

impl Known {
    /// A copy of `ext`, if it holds known extensions only.
    fn copy(ext: &Extensions) -> Option<Self> {
        let mut found = 0;
        let known = Self {
            peer: copy_one(ext, &mut found),
            #[cfg(feature = "axum")]
            connect_info: copy_one(ext, &mut found),
            #[cfg(feature = "proxy")]
            upgrade: copy_one(ext, &mut found),
            tried: copy_one(ext, &mut found),
        };
        (found == ext.len()).then_some(known)
    }

    fn insert_into(self, ext: &mut Extensions) {
        insert_one(ext, self.peer);
        #[cfg(feature = "axum")]
        insert_one(ext, self.connect_info);
        #[cfg(feature = "proxy")]
        insert_one(ext, self.upgrade);
        insert_one(ext, self.tried);
    }
}

/// A copy of `ext`'s `T`, counted in `found`.
fn copy_one<T: Clone + Send + Sync + 'static>(ext: &Extensions, found: &mut usize) -> Option<T> {
    let value = ext.get::<T>().cloned();
    *found += usize::from(value.is_some());
    value
}

fn insert_one<T: Clone + Send + Sync + 'static>(ext: &mut Extensions, value: Option<T>) {
    if let Some(value) = value {
        ext.insert(value);
    }
}

impl Head {
    /// A copy of `parts`.
    pub(crate) fn copy(parts: &Parts) -> Self {
        let ext = &parts.extensions;
        let extensions = match Known::copy(ext) {
            Some(known) => Copied::Known(known),
            None => Copied::All(ext.clone()),
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

    /// The request to send again, with `body`; `last` moves the copy in.
    pub(crate) fn request<B>(this: &mut Option<Self>, last: bool, body: B) -> Option<Request<B>> {
        let head = if last {
            this.take()?
        } else {
            this.as_ref()?.clone()
        };
        let mut req = Request::new(body);
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
            Copied::Known(known) => known.insert_into(req.extensions_mut()),
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryBody;

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
                let req: Request<RetryBody<http_body_util::Empty<bytes::Bytes>>> =
                    Head::request(&mut head, last, RetryBody::empty()).unwrap();
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
