//! The smoke-training image allow-list, compared by parsed image reference rather than by string prefix: the
//! registry host must be the same host (`registry.example.com` does not allow `registry.example.com.evil.io`), the
//! repository must lie under the entry's path by whole segments (`ml` does not allow `ml-evil`), and an entry pinned
//! to a digest (or a tag) allows only that digest (or tag). Checked when a rollout starts and again each time a check
//! Job is built, since `spec.checks` stays editable while a rollout runs.

use std::fmt;

/// The registry an image without a host comes from (as container runtimes resolve it).
const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference: `[host[:port]/]path[:tag][@algorithm:hex]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port), lower case; `docker.io` when the reference names none.
    pub host: String,
    /// Repository path segments (`library/ubuntu` for `ubuntu` on Docker Hub).
    pub path: Vec<String>,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest pin (`sha256:<hex>`), if any.
    pub digest: Option<String>,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path.join("/"))?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses an image reference. The error says what is wrong with it.
pub fn parse(reference: &str) -> Result<ImageRef, String> {
    let text = reference.trim();
    if text.is_empty() || text.len() > 1024 {
        return Err("an image reference must be 1 to 1024 characters".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an image reference must not contain spaces or control characters".into());
    }
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(parse_digest(digest)?)),
        None => (text, None),
    };
    // A tag is a `:` after the last `/` (a `:` before it is the registry's port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &name[last_slash + i + 1..];
            if !valid_tag(tag) {
                return Err(format!("`{tag}` is not a valid tag"));
            }
            (&name[..last_slash + i], Some(tag.to_string()))
        }
        None => (name, None),
    };
    let mut segments: Vec<&str> = name.split('/').collect();
    let host = match segments.first().copied() {
        Some(first) if segments.len() > 1 && looks_like_host(first) => {
            let host = first.to_ascii_lowercase();
            if !valid_host(&host) {
                return Err(format!("`{first}` is not a valid registry host"));
            }
            segments.remove(0);
            normalise_host(host)
        }
        _ => DEFAULT_REGISTRY.to_string(),
    };
    if segments.is_empty() || segments.iter().any(|s| !valid_path_segment(s)) {
        return Err(format!(
            "`{name}` is not a valid repository (lower-case letters, digits and `.`, `_`, `-` between slashes)"
        ));
    }
    let mut path: Vec<String> = segments.into_iter().map(str::to_string).collect();
    if host == DEFAULT_REGISTRY && path.len() == 1 {
        path.insert(0, "library".into());
    }
    Ok(ImageRef { host, path, tag, digest })
}

/// One allow-list entry: a host, optionally a repository path under it (whole segments), optionally pinned to a tag
/// or digest. A trailing `/` is accepted (`registry.example.com/ml/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    host: String,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<String>,
}

/// Parses an allow-list entry.
pub fn parse_entry(entry: &str) -> Result<AllowEntry, String> {
    let text = entry.trim().trim_end_matches('/');
    if text.is_empty() {
        return Err("an empty allow-list entry allows nothing".into());
    }
    // A bare host (`registry.example.com`, `localhost:5000`) allows every repository on it.
    if !text.contains('/') && !text.contains('@') && looks_like_host(text) {
        let host = text.to_ascii_lowercase();
        if !valid_host(&host) {
            return Err(format!("`{text}` is not a valid registry host"));
        }
        return Ok(AllowEntry { host: normalise_host(host), path: Vec::new(), tag: None, digest: None });
    }
    let image = parse(text)?;
    // `ubuntu` as an entry means the repository docker.io/library/ubuntu, like the image `ubuntu`.
    Ok(AllowEntry { host: image.host, path: image.path, tag: image.tag, digest: image.digest })
}

impl AllowEntry {
    /// True when `image` is allowed by this entry.
    pub fn allows(&self, image: &ImageRef) -> bool {
        if self.host != image.host || !image.path.starts_with(&self.path) {
            return false;
        }
        let pinned = self.tag.is_some() || self.digest.is_some();
        if pinned && image.path != self.path {
            return false;
        }
        if let Some(digest) = &self.digest
            && image.digest.as_ref() != Some(digest)
        {
            return false;
        }
        if let Some(tag) = &self.tag
            && self.digest.is_none()
            && image.tag.as_ref() != Some(tag)
        {
            return false;
        }
        true
    }
}

/// Checks a smoke-training image against the controller's allow-list. The error is the message for the user: it
/// names the image as parsed and the entries that would allow it.
pub fn check_smoke_image(image: &str, allow_list: &[String]) -> Result<(), String> {
    let parsed = parse(image).map_err(|why| format!("smoke-training image `{image}` cannot be used: {why}"))?;
    let entries: Vec<AllowEntry> = allow_list.iter().filter_map(|entry| parse_entry(entry).ok()).collect();
    if entries.iter().any(|entry| entry.allows(&parsed)) {
        return Ok(());
    }
    let allowed = if entries.is_empty() { "none configured".to_string() } else { allow_list.join(", ") };
    Err(format!(
        "smoke-training image `{image}` (registry {}, repository {}) is not allowed by this controller (allowed: \
         {allowed}; entries match by registry host and whole repository path segments)",
        parsed.host,
        parsed.path.join("/")
    ))
}

/// True when the image is allowed (see [`check_smoke_image`]).
pub fn allowed(image: &str, allow_list: &[String]) -> bool {
    check_smoke_image(image, allow_list).is_ok()
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase())
}

fn normalise_host(host: String) -> String {
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        _ => host,
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let labels_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && labels_ok
}

fn valid_path_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !segment.contains("..")
        && !segment.contains("___")
        && !segment.contains("._")
        && !segment.contains("_.")
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_digest(digest: &str) -> Result<String, String> {
    let lower = digest.to_ascii_lowercase();
    match lower.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(lower),
        Some(("sha512", hex)) if hex.len() == 128 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(lower),
        _ => Err(format!("`{digest}` is not a digest (`sha256:` and 64 hex digits)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_host_entry_does_not_allow_a_longer_host_that_starts_with_it() {
        let list = allow(&["registry.example.com"]);
        assert!(allowed("registry.example.com/ml/trainer:v1", &list));
        assert!(!allowed("registry.example.com.evil.io/ml/trainer:v1", &list));
        assert!(!allowed("registry.example.com:5000/ml/trainer:v1", &list), "another port is another registry");
        assert!(!allowed("evil.io/registry.example.com/trainer", &list));
    }

    #[test]
    fn a_path_entry_matches_whole_segments_only() {
        let list = allow(&["registry.example.com/ml/"]);
        assert!(allowed("registry.example.com/ml/trainer:v1", &list));
        assert!(allowed(&format!("registry.example.com/ml/team/trainer@sha256:{}", "c".repeat(64)), &list));
        assert!(!allowed("registry.example.com/ml-evil/trainer:v1", &list));
        assert!(!allowed("registry.example.com/mlx", &list));
        assert!(!allowed("registry.example.com/other/ml/trainer", &list));
    }

    #[test]
    fn a_digest_pinned_entry_allows_that_digest_only() {
        let pin = format!("sha256:{}", "a".repeat(64));
        let list = vec![format!("registry.example.com/ml/trainer@{pin}")];
        assert!(allowed(&format!("registry.example.com/ml/trainer@{pin}"), &list));
        assert!(allowed(&format!("registry.example.com/ml/trainer:v1@{pin}"), &list));
        assert!(!allowed("registry.example.com/ml/trainer:v1", &list));
        assert!(!allowed(&format!("registry.example.com/ml/trainer@sha256:{}", "b".repeat(64)), &list));
        assert!(!allowed(&format!("registry.example.com/ml/trainer/sub@{pin}"), &list));
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let list = allow(&["docker.io/library/python"]);
        assert!(allowed("python:3.12", &list));
        assert!(allowed("index.docker.io/library/python", &list));
        assert!(!allowed("python-evil", &list));
        assert!(!allowed("evil/python", &list));
    }

    #[test]
    fn malformed_references_and_entries_allow_nothing() {
        let list = allow(&["registry.example.com"]);
        for bad in ["", "registry.example.com/ML/Trainer", "registry.example.com/ml//x", "registry.example.com/a b"] {
            assert!(!allowed(bad, &list), "{bad}");
        }
        assert!(!allowed("registry.example.com/ml/x", &[]));
        assert!(!allowed("registry.example.com/ml/x", &allow(&["", "/"])));
        assert!(check_smoke_image("registry.example.com.evil.io/x", &list).unwrap_err().contains("not allowed"));
    }
}
