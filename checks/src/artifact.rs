//! Where a verified copy of an artifact lives in a pod, shared by `rampart-check fetch` (which writes it) and the
//! controller (which points check containers and model servers at it). No I/O.

/// The mount path of the volume the fetching init container writes the verified copy to.
pub const MODEL_DIR: &str = "/rampart/model";

/// The file name a single-file model gets in the verified copy: the last segment of its URI (`model` when that is not
/// a plain name).
pub fn single_file_name(uri: &str) -> String {
    let without_query = uri.split(['?', '#']).next().unwrap_or(uri);
    match without_query.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." && !name.contains(':') => name.to_string(),
        _ => "model".to_string(),
    }
}

/// The path a consumer loads from the verified copy in `dir`: `dir` itself for a directory model, the file for a
/// single-file model (a manifest of one file named `.`).
pub fn local_model_path(dir: &str, uri: &str, single_file: bool) -> String {
    if single_file { format!("{}/{}", dir.trim_end_matches('/'), single_file_name(uri)) } else { dir.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_file_models_keep_the_last_uri_segment_as_their_name() {
        assert_eq!(single_file_name("s3://models/fraud/v7/model.onnx"), "model.onnx");
        assert_eq!(single_file_name("https://host/a/b.safetensors?x=1"), "b.safetensors");
        assert_eq!(single_file_name("s3://bucket"), "bucket");
        assert_eq!(single_file_name("s3://"), "model");
        assert_eq!(local_model_path(MODEL_DIR, "s3://m/fraud/v7/", false), "/rampart/model");
        assert_eq!(local_model_path(MODEL_DIR, "/data/m.onnx", true), "/rampart/model/m.onnx");
    }
}
