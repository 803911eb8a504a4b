//! The browser files the room server serves: the demo chat page at `/` and
//! the client library `edgews.js` (with its types), embedded in the binary
//! so there is nothing to deploy beside it and no build step. The sources
//! live in `web/` at the repository root; `docs/client.md` documents them.

/// One embedded file: its URL path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/edgews.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/edgews.js"),
    },
    Asset {
        path: "/edgews.d.ts",
        // A TypeScript declaration file is served as plain text: browsers
        // only display or download it, and no registered type fits better.
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../web/edgews.d.ts"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
];

/// The embedded file for a request path (without its query string):
/// `(content type, body)`, or `None` when there is none. `/index.html` is
/// `/`. Paths match exactly, so no request can name anything but these.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS
        .iter()
        .find(|a| a.path == path)
        .map(|a| (a.content_type, a.body))
}

/// The URL paths of every embedded file, e.g. for a startup log line.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_served_with_its_type() {
        let (ty, body) = asset("/").expect("the page");
        assert!(ty.starts_with("text/html"));
        assert!(std::str::from_utf8(body)
            .expect("utf-8")
            .contains(r#"<script type="module" src="/app.js">"#));
        assert_eq!(asset("/index.html"), asset("/"));
        let (ty, body) = asset("/edgews.js").expect("the library");
        assert!(ty.starts_with("text/javascript"));
        assert!(std::str::from_utf8(body)
            .expect("utf-8")
            .contains("export class EdgewsClient"));
        assert!(asset("/edgews.d.ts").is_some());
        assert!(asset("/app.js").is_some());
        assert_eq!(
            asset("/style.css").map(|a| a.0),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(paths().count(), 5);
    }

    #[test]
    fn nothing_else_is_served() {
        for path in [
            "",
            "/web/app.js",
            "/../Cargo.toml",
            "/app.js/",
            "/APP.JS",
            "/edgews.js?x=1",
            "//edgews.js",
            "/ws",
        ] {
            assert_eq!(asset(path), None, "{path:?}");
        }
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        // Every local file the page and the app import must be embedded.
        let page = std::str::from_utf8(asset("/").expect("page").1).expect("utf-8");
        let app = std::str::from_utf8(asset("/app.js").expect("app").1).expect("utf-8");
        for needed in ["/style.css", "/app.js"] {
            assert!(page.contains(needed) && asset(needed).is_some(), "{needed}");
        }
        assert!(app.contains(r#"from "/edgews.js""#));
    }
}
