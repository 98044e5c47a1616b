//! Link previews (`docs/link-previews.md`): the sender's device fetches the page behind an
//! `https` link through Tor, on a circuit of its own, and reads its title, description and site
//! name. There is no direct path: without Tor there is no preview. The receiver never fetches.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use url::{Host, Position, Url};

use crate::tor::Tor;
use crate::{Carrier, NetError};

/// The most of a page that is read; what comes after is not looked at.
pub const MAX_PAGE: usize = 512 * 1024;
/// Redirects followed (each to an `https` address).
pub const MAX_REDIRECTS: usize = 3;
/// How long a whole fetch may take, redirects included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The user agent every preview fetch sends: the same for everyone, naming no version.
const AGENT: &str = "Mozilla/5.0 (compatible; link preview)";

/// What a page says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// `og:title`, else `twitter:title`, else `<title>`.
    pub title: String,
    /// `og:description`, else `twitter:description`, else `<meta name="description">`.
    pub description: Option<String>,
    /// `og:site_name`.
    pub site: Option<String>,
}

/// Why there is no preview. Nothing here went anywhere but through Tor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// Only `https` links are previewed (a plain `http` page would show the exit what is read).
    #[error("only https links get a preview")]
    NotHttps,
    /// Tor could not carry the fetch (nothing was sent another way).
    #[error(transparent)]
    Tor(#[from] NetError),
    /// The site's certificate was not accepted, or TLS failed.
    #[error("the site's TLS failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The site did not speak HTTP/1.1 as expected.
    #[error("the site's answer was not understood: {0}")]
    Http(String),
    /// The site answered with another status than 200 or a redirect.
    #[error("the site answered {0}")]
    Status(u16),
    /// Not a web page (an image, a file, …).
    #[error("the link is not a web page")]
    NotHtml,
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("too many redirects")]
    TooManyRedirects,
    /// The page has no title.
    #[error("the page has no title")]
    NothingToShow,
    /// The fetch took longer than [`FETCH_TIMEOUT`].
    #[error("the site did not answer in time")]
    Timeout,
    /// This system has no certificate authorities to check the site with.
    #[error("no trusted certificate authorities on this system")]
    NoRoots,
}

impl PreviewError {
    /// A stable name for interfaces and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotHttps => "not_https",
            Self::Tor(_) => "tor",
            Self::Tls(_) => "tls",
            Self::Http(_) => "http",
            Self::Status(_) => "status",
            Self::NotHtml => "not_html",
            Self::TooManyRedirects => "redirects",
            Self::NothingToShow => "no_title",
            Self::Timeout => "timeout",
            Self::NoRoots => "no_roots",
        }
    }
}

/// The certificate authorities this system trusts (its store, or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` where set), read once.
fn system_roots() -> Result<Arc<RootCertStore>, PreviewError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system certificate could not be read");
        }
        let (added, ignored) = store.add_parsable_certificates(found.certs);
        tracing::info!(
            added,
            ignored,
            "system certificate authorities for link previews"
        );
        Arc::new(store)
    });
    if roots.is_empty() {
        return Err(PreviewError::NoRoots);
    }
    Ok(roots.clone())
}

/// Fetches the page behind `url` through `tor`, on a circuit used for nothing else, and reads
/// what it says about itself.
pub async fn fetch_page(tor: &Tor, url: &str) -> Result<Page, PreviewError> {
    let roots = system_roots()?;
    let connect = |host: String, port: u16| async move {
        let stream = tor.connect_isolated(&host, port).await?;
        Ok(Box::new(stream) as Box<dyn Carrier>)
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch_with(connect, roots, url))
        .await
        .map_err(|_| PreviewError::Timeout)?
}

/// [`fetch_page`] over the streams `connect` opens (a unit test opens TCP streams).
async fn fetch_with<F, Fut>(
    connect: F,
    roots: Arc<RootCertStore>,
    url: &str,
) -> Result<Page, PreviewError>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = Result<Box<dyn Carrier>, NetError>>,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PreviewError::Tls(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(config));
    let mut url = Url::parse(url).map_err(|_| PreviewError::NotHttps)?;
    for _ in 0..=MAX_REDIRECTS {
        if url.scheme() != "https" {
            return Err(PreviewError::NotHttps);
        }
        let (host, name) = match url.host() {
            Some(Host::Domain(d)) => (
                d.to_string(),
                ServerName::try_from(d.to_string()).map_err(|_| PreviewError::NotHttps)?,
            ),
            Some(Host::Ipv4(ip)) => (ip.to_string(), ServerName::IpAddress(ip.into())),
            Some(Host::Ipv6(ip)) => (ip.to_string(), ServerName::IpAddress(ip.into())),
            None => return Err(PreviewError::NotHttps),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let stream = connect(host, port).await?;
        let stream = tls.connect(name, stream).await.map_err(PreviewError::Tls)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PreviewError::Http(e.to_string()))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _stop = AbortOnDrop(conn);
        let request = Request::get(&url[Position::BeforePath..Position::AfterQuery])
            .header(HOST, &url[Position::BeforeHost..Position::AfterPort])
            .header(USER_AGENT, AGENT)
            .header(ACCEPT, "text/html,application/xhtml+xml")
            .header(ACCEPT_ENCODING, "identity")
            .body(Empty::<Bytes>::new())
            .map_err(|e| PreviewError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| PreviewError::Http(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or(PreviewError::Status(status.as_u16()))?;
            url = next;
            continue;
        }
        if status != StatusCode::OK {
            return Err(PreviewError::Status(status.as_u16()));
        }
        let html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .is_some_and(|t| t == "text/html" || t == "application/xhtml+xml");
        if !html {
            return Err(PreviewError::NotHtml);
        }
        let mut body = response.into_body();
        let mut page = Vec::new();
        while page.len() < MAX_PAGE {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|e| PreviewError::Http(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_PAGE - page.len();
                page.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        return parse_page(&page).ok_or(PreviewError::NothingToShow);
    }
    Err(PreviewError::TooManyRedirects)
}

/// Ends the connection task when the fetch is done with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a page's title, description and site name (UTF-8; other bytes become U+FFFD), with
/// HTML5's tokenizer: script, style and other raw text are never read as tags.
pub fn parse_page(html: &[u8]) -> Option<Page> {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Tokenizer, TokenizerOpts};

    let text = String::from_utf8_lossy(html);
    let input = BufferQueue::default();
    input.push_back(StrTendril::from(text.as_ref()));
    let tokenizer = Tokenizer::new(Collect::default(), TokenizerOpts::default());
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let found = tokenizer.sink.found.into_inner();
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| found.metas.iter().find(|(n, _)| n == k).map(|(_, v)| v))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let title = pick(&["og:title", "twitter:title"]).or_else(|| {
        let t = found.title.trim();
        (!t.is_empty()).then(|| t.to_string())
    })?;
    Some(Page {
        title,
        description: pick(&["og:description", "twitter:description", "description"]),
        site: pick(&["og:site_name"]),
    })
}

#[derive(Default)]
struct Found {
    /// `(property or name, content)` of each `<meta>`, lower-cased names.
    metas: Vec<(String, String)>,
    title: String,
    in_title: bool,
    titles: usize,
}

#[derive(Default)]
struct Collect {
    found: std::cell::RefCell<Found>,
}

impl html5ever::tokenizer::TokenSink for Collect {
    type Handle = ();

    fn process_token(
        &self,
        token: html5ever::tokenizer::Token,
        _line: u64,
    ) -> html5ever::tokenizer::TokenSinkResult<()> {
        use html5ever::tokenizer::states::RawKind;
        use html5ever::tokenizer::{TagKind, Token, TokenSinkResult};
        let mut f = self.found.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.as_ref();
                if tag.kind == TagKind::EndTag {
                    if name == "title" {
                        f.in_title = false;
                    }
                    return TokenSinkResult::Continue;
                }
                match name {
                    "meta" if f.metas.len() < 256 => {
                        let attr = |n: &str| {
                            tag.attrs
                                .iter()
                                .find(|a| a.name.local.as_ref().eq_ignore_ascii_case(n))
                                .map(|a| a.value.to_string())
                        };
                        if let (Some(key), Some(content)) =
                            (attr("property").or_else(|| attr("name")), attr("content"))
                        {
                            f.metas.push((key.trim().to_ascii_lowercase(), content));
                        }
                    }
                    // The first <title> counts (an SVG's own title comes later, if at all).
                    "title" => {
                        f.titles += 1;
                        f.in_title = f.titles == 1;
                        return TokenSinkResult::RawData(RawKind::Rcdata);
                    }
                    "textarea" => return TokenSinkResult::RawData(RawKind::Rcdata),
                    "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                        return TokenSinkResult::RawData(RawKind::Rawtext);
                    }
                    "plaintext" => return TokenSinkResult::Plaintext,
                    _ => {}
                }
            }
            Token::CharacterTokens(t) if f.in_title && f.title.len() < 4096 => {
                f.title.push_str(&t);
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn open_graph_first_then_twitter_then_the_document() {
        let page = parse_page(
            br#"<!doctype html><html><head>
            <title>Plain &amp; simple</title>
            <meta name="twitter:title" content="From Twitter">
            <META PROPERTY="og:title" CONTENT="Ptarmigans &amp; snow">
            <meta name="description" content="  The document's own  ">
            <meta property="og:site_name" content="Birds of the North">
            </head><body>hi</body></html>"#,
        )
        .unwrap();
        assert_eq!(
            page,
            Page {
                title: "Ptarmigans & snow".into(),
                description: Some("The document's own".into()),
                site: Some("Birds of the North".into()),
            }
        );
        let plain = parse_page(b"<title>\n  Only a title </title><p>x").unwrap();
        assert_eq!(
            (plain.title.as_str(), plain.description, plain.site),
            ("Only a title", None, None)
        );
    }

    #[test]
    fn scripts_comments_and_raw_text_are_never_read_as_tags() {
        let page = parse_page(
            br#"<head><script>document.write('<meta property="og:title" content="forged">')
            </script><!-- <meta property="og:description" content="commented"> -->
            <style>meta{}</style><title>Real <b>title</b></title>
            <svg><title>an icon</title></svg></head>"#,
        )
        .unwrap();
        assert_eq!(page.title, "Real <b>title</b>");
        assert_eq!(page.description, None);
        assert!(parse_page(b"<html><body>no title</body></html>").is_none());
        assert!(parse_page(b"").is_none());
        // Bytes that are not UTF-8 do not stop it.
        let page = parse_page(b"<title>caf\xe9 \xff</title>").unwrap();
        assert!(page.title.starts_with("caf"));
    }

    /// A TLS server on loopback answering every request with the next of `answers`; returns
    /// its port, the roots that trust it, and how many requests it saw.
    async fn site(
        answers: Vec<Vec<u8>>,
    ) -> (u16, Arc<RootCertStore>, Arc<std::sync::atomic::AtomicUsize>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let der = cert.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tls.write_all(&answer).await;
                let _ = tls.shutdown().await;
            }
        });
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        (port, Arc::new(roots), seen)
    }

    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut a = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        a
    }

    async fn tcp(host: String, port: u16) -> Result<Box<dyn Carrier>, NetError> {
        let s = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(NetError::Connect)?;
        Ok(Box::new(s) as Box<dyn Carrier>)
    }

    const PAGE: &[u8] = b"<head><meta property='og:title' content='A ptarmigan'></head>";

    #[tokio::test]
    async fn a_page_after_a_redirect_and_every_refusal_typed() {
        let html = "Content-Type: text/html; charset=utf-8\r\n";
        let (port, roots, seen) = site(vec![
            answer("301 Moved", "Location: /final\r\n", b""),
            answer("200 OK", html, PAGE),
        ])
        .await;
        let page = fetch_with(tcp, roots, &format!("https://127.0.0.1:{port}/start"))
            .await
            .unwrap();
        assert_eq!(page.title, "A ptarmigan");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);

        for (answers, code) in [
            (vec![answer("404 Not Found", html, b"")], "status"),
            (
                vec![answer("200 OK", "Content-Type: image/png\r\n", b"\x89PNG")],
                "not_html",
            ),
            (vec![answer("200 OK", html, b"<p>untitled</p>")], "no_title"),
            (
                vec![answer("302 Found", "Location: http://127.0.0.1/\r\n", b"")],
                "not_https",
            ),
            (
                vec![answer("302 Found", "Location: /again\r\n", b""); MAX_REDIRECTS + 1],
                "redirects",
            ),
        ] {
            let (port, roots, _) = site(answers).await;
            let e = fetch_with(tcp, roots, &format!("https://127.0.0.1:{port}/"))
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{e}");
        }

        // A site whose certificate no trusted authority signed.
        let (port, _, _) = site(vec![answer("200 OK", html, PAGE)]).await;
        let (_, other_roots, _) = site(vec![]).await;
        let e = fetch_with(tcp, other_roots, &format!("https://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "tls", "{e}");
        // Only https, before anything is opened.
        let e = fetch_with(tcp, Arc::new(RootCertStore::empty()), "http://127.0.0.1:9/")
            .await
            .unwrap_err();
        assert_eq!(e.code(), "not_https");
    }

    #[tokio::test]
    async fn only_the_first_half_megabyte_is_read() {
        let mut body = PAGE.to_vec();
        body.extend(std::iter::repeat_n(b'x', 4 * MAX_PAGE));
        let (port, roots, _) =
            site(vec![answer("200 OK", "Content-Type: text/html\r\n", &body)]).await;
        let page = fetch_with(tcp, roots, &format!("https://127.0.0.1:{port}/"))
            .await
            .unwrap();
        assert_eq!(page.title, "A ptarmigan");
    }
}
