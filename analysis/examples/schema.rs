//! Prints the JSON Schemas of the offline analysis format, as committed under `analysis/schema/`.
//!
//! `cargo run -p rampart-analysis --example schema -- document > analysis/schema/analysis-document.schema.json`
//! `cargo run -p rampart-analysis --example schema -- report > analysis/schema/analysis-report.schema.json`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_default();
    let schema = match which.as_str() {
        "document" => rampart_analysis::document::document_schema(),
        "report" => rampart_analysis::document::report_schema(),
        _ => return Err("usage: schema document|report".into()),
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
