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
        env.extend(header_vars(self.headers));
        env
    }
}

/// The request headers as CGI variables (`HTTP_*`, `CONTENT_TYPE`), one
/// per variable:
///
/// - `Proxy` is dropped: as `HTTP_PROXY` it would name the outbound proxy
///   of many HTTP clients (httpoxy, CVE-2016-5385).
/// - Two names that map to one variable (`X-Forwarded-For` and
///   `X_Forwarded_For`) would let a client shadow a header a proxy in
///   front set: the spelling with hyphens wins and ones with underscores
///   are dropped, as nginx and Apache do. Two spellings with underscores
///   and none without are both dropped.
/// - Repeated headers are joined into one value (`, `; `; ` for cookies),
///   as RFC 3875 asks.
fn header_vars(headers: &http::HeaderMap) -> Vec<(String, String)> {
    // Variable → (came from a name with an underscore, values).
    let mut vars: Vec<(String, bool, Vec<&str>)> = Vec::new();
    let mut ambiguous: Vec<String> = Vec::new();
    for name in headers.keys() {
        let var = match name.as_str() {
            "content-type" => "CONTENT_TYPE".to_owned(),
            "content-length" | "proxy" => continue,
            other => format!("HTTP_{}", other.to_ascii_uppercase().replace('-', "_")),
        };
        let underscored = name.as_str().contains('_');
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        match vars.iter_mut().find(|(v, _, _)| *v == var) {
            None => vars.push((var, underscored, values)),
            Some(seen) => match (seen.1, underscored) {
                (false, _) => {}
                (true, false) => *seen = (var, false, values),
                (true, true) => ambiguous.push(var),
            },
        }
    }
    vars.into_iter()
        .filter(|(var, underscored, values)| {
            let shadowed = *underscored && ambiguous.contains(var);
            !values.is_empty() && !shadowed
        })
        .map(|(var, _, values)| {
            let separator = if var == "HTTP_COOKIE" { "; " } else { ", " };
            (var, values.join(separator))
        })
        .collect()
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

    fn vars(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        header_vars(&map)
    }

    #[test]
    fn proxy_header_never_becomes_http_proxy() {
        let env = vars(&[("Proxy", "http://evil:8080"), ("X-Test", "yes")]);
        assert_eq!(env, vec![("HTTP_X_TEST".into(), "yes".into())]);
    }

    #[test]
    fn hyphenated_names_win_over_underscored_ones() {
        // Whichever comes first, the hyphenated spelling is the one kept.
        for headers in [
            [
                ("X_Forwarded_For", "6.6.6.6"),
                ("X-Forwarded-For", "10.0.0.1"),
            ],
            [
                ("X-Forwarded-For", "10.0.0.1"),
                ("X_Forwarded_For", "6.6.6.6"),
            ],
        ] {
            let env = vars(&headers);
            assert_eq!(
                env,
                vec![("HTTP_X_FORWARDED_FOR".into(), "10.0.0.1".into())],
                "{headers:?}"
            );
        }
        // Alone, an underscored name passes.
        assert_eq!(
            vars(&[("X_Custom", "1")]),
            vec![("HTTP_X_CUSTOM".into(), "1".into())]
        );
        // Two underscored spellings and no hyphenated one: neither passes.
        assert_eq!(vars(&[("X_A-B", "1"), ("X-A_B", "2")]), vec![]);
    }

    #[test]
    fn repeated_headers_are_one_variable() {
        let env = vars(&[
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ]);
        assert_eq!(
            env,
            vec![
                ("HTTP_X_FORWARDED_FOR".into(), "10.0.0.1, 10.0.0.2".into()),
                ("HTTP_COOKIE".into(), "a=1; b=2".into()),
            ]
        );
    }
}
