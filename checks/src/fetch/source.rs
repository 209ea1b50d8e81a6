//! Where a model's files are: an artifact URI opened as an object store. `s3://` (AWS and S3-compatible endpoints),
//! `gs://`, Azure (`az://`, `abfs://`, `abfss://`), `https://` and local or mounted paths. Credentials and endpoints
//! come from the standard environment of each store (for S3: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, web identity...), so a pod's workload identity works without anything from Rampart.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use super::FetchError;

/// An artifact URI opened for reading.
pub struct Source {
    /// The store the files are read from.
    pub store: Arc<dyn ObjectStore>,
    /// The artifact's location in the store: the prefix of a directory model, or the object of a single-file model.
    pub root: ObjectPath,
    /// Whether the store can list a prefix (an `https://` server cannot: extra files there go unnoticed, but they are
    /// never fetched either).
    pub can_list: bool,
    /// The URI as given, for messages.
    pub uri: String,
}

impl Source {
    /// The object of a file of a directory model (`name` is `/`-separated, from the signed manifest), or the artifact
    /// itself for a single-file model (`name` is `.`).
    pub fn location(&self, name: &str) -> ObjectPath {
        if name == "." {
            return self.root.clone();
        }
        let mut location = self.root.clone();
        for part in name.split('/') {
            location = location.child(part);
        }
        location
    }

    /// The name of a listed object relative to the root, `/`-separated; `None` when it is not below the root.
    pub fn relative_name(&self, location: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = location.prefix_match(&self.root)?.map(|part| part.as_ref().to_string()).collect();
        if parts.is_empty() { None } else { Some(parts.join("/")) }
    }
}

fn source_error(uri: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Source { uri: uri.to_string(), reason: reason.into() }
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Opens `uri`. Nothing is read yet.
pub fn open(uri: &str) -> Result<Source, FetchError> {
    let trimmed = uri.trim();
    if trimmed.is_empty() {
        return Err(source_error(uri, "is empty"));
    }
    let Some((scheme, _)) = trimmed.split_once("://") else {
        return open_local(uri, std::path::Path::new(trimmed));
    };
    let scheme = scheme.to_ascii_lowercase();
    let url = url::Url::parse(trimmed).map_err(|err| source_error(uri, format!("is not a valid URI ({err})")))?;
    let root = ObjectPath::from_url_path(url.path())
        .map_err(|err| source_error(uri, format!("has an unusable path ({err})")))?;
    let cloud = |err: object_store::Error| source_error(uri, format!("cannot be opened: {err}"));
    let (store, can_list): (Arc<dyn ObjectStore>, bool) = match scheme.as_str() {
        "s3" | "s3a" => {
            let store = object_store::aws::AmazonS3Builder::from_env().with_url(trimmed).build().map_err(cloud)?;
            (Arc::new(store), true)
        }
        "gs" => {
            let store =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(trimmed).build().map_err(cloud)?;
            (Arc::new(store), true)
        }
        "az" | "adl" | "azure" | "abfs" | "abfss" => {
            let store =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(trimmed).build().map_err(cloud)?;
            (Arc::new(store), true)
        }
        "https" | "http" => {
            if scheme == "http" && !env_true("AWS_ALLOW_HTTP") {
                return Err(source_error(
                    uri,
                    "uses plain http, which anyone on the path can change; use https, or set AWS_ALLOW_HTTP=true for a \
                     trusted test endpoint",
                ));
            }
            let host = url.host_str().ok_or_else(|| source_error(uri, "names no host"))?;
            let origin = match url.port() {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            let options = object_store::ClientOptions::new().with_allow_http(scheme == "http");
            let store = object_store::http::HttpBuilder::new()
                .with_url(origin)
                .with_client_options(options)
                .build()
                .map_err(cloud)?;
            (Arc::new(store), false)
        }
        "file" => {
            let path = url.to_file_path().map_err(|_| source_error(uri, "is not a local file URI"))?;
            return open_local(uri, &path);
        }
        "pvc" => {
            return Err(source_error(
                uri,
                "is a volume the serving runtime mounts; fetch from the path where it is mounted instead",
            ));
        }
        other => {
            return Err(source_error(
                uri,
                format!("uses scheme `{other}`, which is not supported (s3://, gs://, az://, https:// or a path)"),
            ));
        }
    };
    Ok(Source { store, root, can_list, uri: uri.to_string() })
}

fn open_local(uri: &str, path: &std::path::Path) -> Result<Source, FetchError> {
    let absolute = std::fs::canonicalize(path).map_err(|err| source_error(uri, format!("cannot be read ({err})")))?;
    let metadata = std::fs::metadata(&absolute).map_err(|err| source_error(uri, format!("cannot be read ({err})")))?;
    // A single file is read through its directory, so that `.` in the manifest maps to the file's own name.
    let (directory, root) = if metadata.is_file() {
        let parent = absolute.parent().ok_or_else(|| source_error(uri, "has no parent directory"))?;
        let name = absolute.file_name().and_then(|n| n.to_str()).ok_or_else(|| source_error(uri, "is not UTF-8"))?;
        (parent.to_path_buf(), ObjectPath::from(name))
    } else {
        (absolute.clone(), ObjectPath::default())
    };
    let store = object_store::local::LocalFileSystem::new_with_prefix(&directory)
        .map_err(|err| source_error(uri, format!("cannot be opened: {err}")))?;
    Ok(Source { store: Arc::new(store), root, can_list: true, uri: uri.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_unsupported_schemes_and_plain_http_by_default() {
        let err = open("ftp://host/model").err().unwrap().to_string();
        assert!(err.contains("scheme `ftp`"), "{err}");
        let err = open("pvc://claim/model").err().unwrap().to_string();
        assert!(err.contains("mounted"), "{err}");
        if !env_true("AWS_ALLOW_HTTP") {
            let err = open("http://example.com/model").err().unwrap().to_string();
            assert!(err.contains("plain http"), "{err}");
        }
    }

    #[test]
    fn maps_manifest_names_below_the_artifact_root() {
        let source = open("https://models.example.com/fraud/v7").unwrap();
        assert_eq!(source.location("weights/a.bin").as_ref(), "fraud/v7/weights/a.bin");
        assert_eq!(source.location(".").as_ref(), "fraud/v7");
        assert_eq!(source.relative_name(&ObjectPath::from("fraud/v7/x/y.bin")).as_deref(), Some("x/y.bin"));
        assert_eq!(source.relative_name(&ObjectPath::from("fraud/v70/y.bin")), None);
    }
}
