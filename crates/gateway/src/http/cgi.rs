//! CGI for command modules: the request as environment variables, the
//! response parsed from stdout (RFC 3875, section 6).

use http::{HeaderName, HeaderValue, StatusCode};

/// Environment variables describing a request.
pub(crate) struct CgiRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) mount: &'a str,
    pub(crate) remote_addr: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) body_len: usize,
    pub(crate) headers: &'a http::HeaderMap,
}

impl CgiRequest<'_> {
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let path_info = self.path.strip_prefix(self.mount).unwrap_or(self.path);
        let mut env = vec![
            ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
            ("REQUEST_METHOD".into(), self.method.into()),
            ("SCRIPT_NAME".into(), self.mount.into()),
            ("PATH_INFO".into(), path_info.into()),
            ("QUERY_STRING".into(), self.query.into()),
            ("REQUEST_URI".into(), self.uri.into()),
            ("REMOTE_ADDR".into(), self.remote_addr.into()),
            ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
            ("SHANHAI_REQUEST_ID".into(), self.request_id.into()),
            ("CONTENT_LENGTH".into(), self.body_len.to_string()),
        ];
        for (name, value) in self.headers {
            let Ok(value) = value.to_str() else { continue };
            let var = match name.as_str() {
                "content-type" => "CONTENT_TYPE".to_owned(),
                "content-length" => continue,
                other => format!("HTTP_{}", other.to_ascii_uppercase().replace('-', "_")),
            };
            env.push((var, value.to_owned()));
        }
        env
    }
}

/// A response parsed from a command module's stdout.
#[derive(Debug)]
pub(crate) struct CgiResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Vec<u8>,
}

/// Splits stdout into CGI headers and body. Output that does not start with
/// a well-formed header block is all body, served as `text/plain`.
pub(crate) fn parse_stdout(stdout: Vec<u8>) -> CgiResponse {
    parse_headers(&stdout).unwrap_or_else(|| CgiResponse {
        status: StatusCode::OK,
        headers: vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body: stdout,
    })
}

fn parse_headers(stdout: &[u8]) -> Option<CgiResponse> {
    let (head, body_start) = find_blank_line(stdout)?;
    let head = std::str::from_utf8(&stdout[..head]).ok()?;
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?;
            status = StatusCode::from_bytes(code.as_bytes()).ok()?;
        } else {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            headers.push((name, HeaderValue::from_str(value).ok()?));
        }
    }
    Some(CgiResponse {
        status,
        headers,
        body: stdout[body_start..].to_vec(),
    })
}

/// The end of the header block and the start of the body: the first empty
/// line, with `\n` or `\r\n` endings.
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &bytes[line_start..i];
        if line.is_empty() || line == b"\r" {
            return (line_start > 0).then_some((line_start, i + 1));
        }
        line_start = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_headers() {
        let r = parse_stdout(
            b"Status: 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}".to_vec(),
        );
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.headers[0].0, http::header::CONTENT_TYPE);
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn plain_output_is_body() {
        let r = parse_stdout(b"hello\nworld\n".to_vec());
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, b"hello\nworld\n");
        let r = parse_stdout(b"not a header line\n\nbody".to_vec());
        assert_eq!(r.body, b"not a header line\n\nbody");
    }

    #[test]
    fn builds_cgi_environment() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("yes"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let env = CgiRequest {
            method: "POST",
            path: "/cgi/a/b",
            query: "q=1",
            uri: "/cgi/a/b?q=1",
            mount: "/cgi",
            remote_addr: "127.0.0.1:1",
            request_id: "id",
            body_len: 3,
            headers: &headers,
        }
        .env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("HTTP_X_TEST"), Some("yes"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("CONTENT_LENGTH"), Some("3"));
    }
}
