//! Who may use the admin listener: HTTP Basic credentials of a `[[users]]` entry with
//! `admin = true`, and, for calls that change the broker, a page of the console's own
//! origin (so another site open in the operator's browser cannot purge a queue with the
//! credentials the browser remembers).

use base64::Engine;

use crate::config::Config;
use crate::http::Request;

/// The `WWW-Authenticate` challenge of a 401.
pub const CHALLENGE: &str = "Basic realm=\"mirrormq admin\", charset=\"UTF-8\"";

/// Whether the request carries an admin's login and password.
pub fn is_admin(request: &Request, config: &Config) -> bool {
    request
        .header("authorization")
        .and_then(basic_credentials)
        .is_some_and(|(login, password)| config.authenticate_admin(&login, &password))
}

/// `Basic BASE64(login:password)` as its two parts.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, password) = text.split_once(':')?;
    Some((login.to_string(), password.to_string()))
}

/// Whether a call that changes the broker comes from the console's own origin: a
/// browser names the page's origin in `Origin`; tools send none.
pub fn same_origin(request: &Request) -> bool {
    match (request.header("origin"), request.header("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://") == Some(host)
                || origin.strip_prefix("https://") == Some(host)
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &str) -> Request {
        let text = format!("GET / HTTP/1.1\r\n{headers}\r\n");
        crate::http::parse_request(text.as_bytes(), &Default::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn config() -> Config {
        let text = "[broker]\nname = \"b\"\ndata_dir = \"d\"\n\
            [[users]]\nname = \"ops\"\npassword = \"s:cret\"\nadmin = true\n\
            [[users]]\nname = \"app\"\npassword = \"app\"\n";
        Config::parse(text, std::path::Path::new("b.toml")).unwrap()
    }

    fn basic(credentials: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Authorization: Basic {encoded}\r\n")
    }

    #[test]
    fn only_admin_users_get_in() {
        let config = config();
        let cases = [
            (basic("ops:s:cret"), true),
            (basic("ops:wrong"), false),
            (basic("app:app"), false),
            (basic("nobody:"), false),
            ("Authorization: Basic !!!\r\n".to_string(), false),
            ("Authorization: Bearer abc\r\n".to_string(), false),
            (String::new(), false),
        ];
        for (header, allowed) in cases {
            assert_eq!(is_admin(&request(&header), &config), allowed, "{header}");
        }
    }

    #[test]
    fn changes_come_from_the_console_origin_or_a_tool() {
        let cases = [
            ("Host: 127.0.0.1:8161\r\n", true),
            (
                "Host: 127.0.0.1:8161\r\nOrigin: http://127.0.0.1:8161\r\n",
                true,
            ),
            (
                "Host: 127.0.0.1:8161\r\nOrigin: http://evil.example\r\n",
                false,
            ),
            ("Origin: http://127.0.0.1:8161\r\n", false),
        ];
        for (headers, allowed) in cases {
            assert_eq!(same_origin(&request(headers)), allowed, "{headers}");
        }
    }
}
